"""Themes: the built-in ones from the top-level themes/ (and in a wheel), your own from the
config folder and the workspace, broken ones reported and skipped, and colours that stay
readable (light borders, a 16-colour high-contrast theme)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from rich.color import Color as RichColor
from rich.color import ColorSystem
from textual._doc import take_svg_screenshot
from textual.command import CommandList, CommandPalette
from tui_support import wait_for

from fluxtui.tui import settings, theming
from fluxtui.tui.app import make_app

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

OCEAN = """/* a user's theme */
$dark: true;
$primary: #00afaf;  $accent: #ffaf00;
$background: #001c2c;
$surface: #00283c;
$panel: #003850;
$panel-border: #00afaf;
"""
BROKEN = """$dark: true;
$primary: #ff0000;
$accent #00ff00;
/* a comment
   over two lines */
$background: notacolour;
"""


class Snapshots(SVGImageExtension):
    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / Path(test_location.filepath).stem)


def user_themes(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "xdg" / "fluxtui" / "themes"  # conftest points XDG_CONFIG_HOME at tmp/xdg
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.tcss").write_text(text)
    return folder


# -- where the built-in themes live -------------------------------------------------------


def test_the_builtin_themes_come_from_the_top_level_folder_only():
    assert theming.THEMES_DIR == ROOT / "themes"
    assert {t.name for t in theming.load_themes()} == {theming.DARK, theming.LIGHT, theming.HIGH_CONTRAST}
    tracked = subprocess.run(["git", "ls-files", "*.tcss"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.split() and all(p.startswith("themes/") for p in tracked.stdout.split())  # no 2nd copy
    assert not (ROOT / "fluxtui" / "themes").exists()


def test_pyproject_lists_every_package_the_mapping_needs():
    """The themes mapping makes the package list explicit: a new package must be named there."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fluxtui").rglob("__init__.py")}
    assert on_disk - set(setuptools["packages"]) == set(), "add these to [tool.setuptools] packages"
    assert setuptools["package-dir"]["fluxtui.themes"] == "themes"


@pytest.mark.slow
def test_a_wheel_from_a_clean_checkout_carries_the_themes(tmp_path):
    src, dist, bare = tmp_path / "src", tmp_path / "dist", tmp_path / "bare"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):  # the tree as a fresh clone of it has it: no build/, no egg-info
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            (src / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            (src / os.fsdecode(name)).write_bytes(path.read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src], check=True, timeout=300)
    (wheel,) = dist.glob("fluxtui-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", bare, wheel], check=True, timeout=300)
    probe = (
        "import fluxtui; from fluxtui.tui import theming; "
        "print(fluxtui.__file__); print(theming.RULES_FILE.is_file()); "
        "print(sorted(t.name for t in theming.load_themes()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(bare)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    where, rules, names = out.stdout.splitlines()
    assert where.startswith(str(bare)) and rules == "True"
    assert names == str(sorted([theming.DARK, theming.HIGH_CONTRAST, theming.LIGHT]))
    assert (bare / "fluxtui" / "tui" / "serve_page.html").is_file()  # `fluxtui serve`'s page


# -- your own themes ----------------------------------------------------------------------


def test_a_broken_palette_is_reported_by_file_and_line(tmp_path):
    folder = user_themes(tmp_path, broken=BROKEN, ocean=OCEAN)
    loaded = theming.load_user_themes([folder])
    assert [t.name for t in loaded.themes] == ["ocean"]
    where = [(Path(p.file).name, p.line) for p in loaded.problems]
    assert where == [("broken.tcss", 3), ("broken.tcss", 6)]
    assert "notacolour" in str(loaded.problems[1]) and "broken.tcss:6" in str(loaded.problems[1])
    (folder / "broken.tcss").write_text("Screen { background: red; }\n")
    assert "declaration" in theming.load_user_themes([folder]).problems[0].message
    (folder / "broken.tcss").write_text("$accent: #00ff00;\n")
    assert "$primary" in theming.load_user_themes([folder]).problems[0].message


@pytest.mark.asyncio
async def test_user_themes_are_listed_applied_and_remembered_and_broken_ones_reported(ws, tmp_path):
    user_themes(tmp_path, ocean=OCEAN, broken=BROKEN)
    (ws.root / "themes").mkdir()
    (ws.root / "themes" / "forest.tcss").write_text("$primary: #5faf5f;\n$dark: false;\n")
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded)
        assert {"ocean", "forest"} <= set(app.available_themes) and "broken" not in app.available_themes
        assert [(Path(p.file).name, p.line) for p in app.theme_problems] == [("broken.tcss", 3), ("broken.tcss", 6)]
        shown = [n.message for n in app._notifications]
        assert any("broken.tcss:3" in m for m in shown) and any("broken.tcss:6" in m for m in shown)
        # the palette's theme picker lists them
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"theme")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "ocean" in str(app.screen.query_one(CommandList)._options), what="the picker")
        prompts = [str(o.prompt) for o in app.screen.query_one(CommandList)._options]
        assert "ocean" in prompts and "forest" in prompts and theming.HIGH_CONTRAST in prompts
        await pilot.press("escape")
        app.theme = "ocean"
        await pilot.pause()
        assert app.current_theme.primary == "#00afaf"
    saved = json.loads((tmp_path / "xdg" / "fluxtui" / settings.SETTINGS_FILE).read_text())
    assert saved["theme"] == "ocean"


@pytest.fixture
def compare(snapshot, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)  # snapshots show the real colours

    def check(app, size=(80, 24)) -> bool:
        async def run_before(pilot) -> None:
            deadline = time.monotonic() + 30
            while not (app.state.scanned and app.state.estimate is not None):
                assert time.monotonic() < deadline, "the app never settled"
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            await pilot.pause()

        shot = take_svg_screenshot(app=app, terminal_size=size, run_before=run_before)
        return snapshot.use_extension(Snapshots) == shot

    return check


def test_a_user_theme_applied(ws, tmp_path, compare):
    user_themes(tmp_path, ocean=OCEAN)
    settings.save({"theme": "ocean"})
    assert compare(make_app(ws.root, watch=False, gpu=False))


def test_the_high_contrast_theme(ws, compare):
    settings.save({"theme": theming.HIGH_CONTRAST})
    assert compare(make_app(ws.root, watch=False, gpu=False))


# -- readable colours ---------------------------------------------------------------------


def variables(name: str) -> dict[str, str]:
    theme = {t.name: t for t in theming.load_themes()}[name]
    return {**theming.VARIABLE_DEFAULTS, **theme.to_color_system().generate(), **theme.variables}


def contrast(a: str, b: str, system: ColorSystem) -> float:
    """WCAG contrast ratio of two colours as a terminal of `system` colours shows them."""

    def luminance(hex_colour: str) -> float:
        rgb = RichColor.parse(hex_colour).downgrade(system).get_truecolor()
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


TEXT_PAIRS = [
    ("foreground", "background"),
    ("text", "background"),
    ("text-muted", "background"),
    ("primary", "background"),
    ("secondary", "background"),
    ("accent", "background"),
    ("success", "background"),
    ("warning", "background"),
    ("error", "background"),
    ("foreground", "panel"),
    ("footer-foreground", "footer-background"),
    ("footer-key-foreground", "footer-background"),
    ("block-cursor-foreground", "block-cursor-background"),
]
BORDER_PAIRS = [("panel-border", "background"), ("border", "background"), ("border-blurred", "background")]


def test_high_contrast_is_readable_on_16_colours():
    v = variables(theming.HIGH_CONTRAST)
    for fg, bg in TEXT_PAIRS:
        assert contrast(v[fg], v[bg], ColorSystem.STANDARD) >= 4.5, (fg, bg)
    for fg, bg in BORDER_PAIRS:
        assert contrast(v[fg], v[bg], ColorSystem.STANDARD) >= 3, (fg, bg)


def test_light_theme_borders_are_visible():
    v = variables(theming.LIGHT)  # was $panel-lighten-2 (#fafafa) on #eeeeee: 1.1 to 1
    assert contrast(v["panel-border"], v["background"], ColorSystem.EIGHT_BIT) >= 3
    assert contrast(v["border-blurred"], v["background"], ColorSystem.EIGHT_BIT) >= 2
