"""One module per `fluxtui` subcommand, each with `main(args) -> exit code`.

Modules here import fluxtui.core and the standard library at the top; anything heavy
(torch, diffusers, textual) only inside the function that needs it.
"""
