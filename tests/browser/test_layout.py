"""A dashboard read at a glance (SPEC 16), in a real JupyterLab at 900 and 1400 px wide, in
JupyterLab's light and dark themes: an MLP on digits (the quickstart's), a small ResNet (many
layers, clustered) and a comparison of their runs, trained as people write it (no sleeps, the
default budget). Every text inside them is measured: none overlaps another, none overflows the box
that holds it; every layer's line has its own colour; the panels use the width (two columns where
the dashboard is wide); the theme's colours reach the text and the lines. Screenshots of each are
kept: under $NNMODES_SCREENSHOTS when set, else under the test's tmp dir (printed)."""

import os
import re
import time
from pathlib import Path

from .conftest import (assert_no_console_errors, error_outputs, open_notebook, run_all_cells,
                       wait_looking, write_notebook)
from .test_architectures import MODELS

TRAIN_SECONDS = 18
WIDTHS = (1400, 900)
CELLS = [
    MODELS,
    """from sklearn.datasets import load_digits
X, y = load_digits(return_X_y=True)
X, y = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 8, 8), torch.tensor(y)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                    nn.Linear(128, 10))
opt = torch.optim.SGD(mlp.parameters(), lr=0.05, momentum=0.9)
first = nm.Monitor(mlp, opt)
first.dashboard()""",
    f"""start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, len(X), (16,))
    opt.zero_grad(); F.cross_entropy(mlp(X[idx] + 0.1 * torch.randn(16, 8, 8)), y[idx]).backward(); opt.step()
report(first, "mlp_done")""",
    """resnet = ResNet()
opt = torch.optim.AdamW(resnet.parameters(), lr=1e-3)
second = nm.Monitor(resnet, opt)
second.dashboard()""",
    f"""images, labels = torch.randn(512, 3, 16, 16), torch.randint(0, 10, (512,))
start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, 512, (32,))
    opt.zero_grad(); F.cross_entropy(resnet(images[idx]), labels[idx]).backward(); opt.step()
report(second, "resnet_done")""",
    """nm.compare(first.run_path, second.run_path)""",
]

# Every text of `root` the reader sees on screen now: HTML text (one box per line) and SVG <text>,
# each clipped to the scroll boxes it is in (a legend's entries scrolled away are not on screen).
# Returns how many, the pairs that overlap, the texts cut off by a box that hides what overflows
# (an svg does), and the texts outside the root.
# The part of the page the notebook shows: its scrolled area (under the toolbar, above the status
# bar), within the window.
VIEW_JS = """(root) => {
  let n = root.parentElement;
  while (n && !(n.scrollHeight > n.clientHeight && /auto|scroll/.test(getComputedStyle(n).overflowY))) n = n.parentElement;
  const box = n ? n.getBoundingClientRect() : { top: 0, bottom: window.innerHeight };
  return { top: Math.max(0, box.top), bottom: Math.min(window.innerHeight, box.bottom) };
}"""
MEASURE_JS = """root => {
  const view = (""" + VIEW_JS + """)(root);
  const onScreen = (r) => r.bottom > view.top && r.top < view.bottom;
  const shown = (el) => {
    for (let n = el; n && n !== document.documentElement; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.display === 'none' || s.visibility === 'hidden' || Number(s.opacity) === 0) return false;
    }
    return true;
  };
  const inside = (r, box, slack = 1) => r.left >= box.left - slack && r.right <= box.right + slack
    && r.top >= box.top - slack && r.bottom <= box.bottom + slack;
  const texts = [];
  const cut = [];
  const add = (rect, el, text) => {
    let r = { left: rect.left, right: rect.right, top: rect.top, bottom: rect.bottom };
    for (let n = el.parentElement; n && n !== root.parentElement; n = n.parentElement) {
      const s = getComputedStyle(n);
      const clips = [s.overflowX, s.overflowY].some((o) => o === 'hidden' || o === 'clip');
      const scrolls = [s.overflowX, s.overflowY].some((o) => o === 'auto' || o === 'scroll');
      if (!clips && !scrolls) continue;
      const box = n.getBoundingClientRect();
      if (clips && !inside(r, box) && onScreen(r)) {
        cut.push({ text, by: n.className.baseVal ?? n.className, at: [r.left, r.top, r.right, r.bottom].map(Math.round),
          box: [box.left, box.top, box.right, box.bottom].map(Math.round) });
      }
      r = { left: Math.max(r.left, box.left), right: Math.min(r.right, box.right),
            top: Math.max(r.top, box.top), bottom: Math.min(r.bottom, box.bottom) };
      if (r.right - r.left < 1 || r.bottom - r.top < 1) return;   // scrolled out of its box
    }
    if (onScreen(r)) texts.push({ text, r, el });
  };
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || el.closest('svg, select, style, script') || !shown(el)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const rect of range.getClientRects()) if (rect.width > 0.5 && rect.height > 0.5) add(rect, el, text.slice(0, 60));
  }
  for (const select of root.querySelectorAll('select')) {
    if (!shown(select) || !onScreen(select.getBoundingClientRect())) continue;
    if (select.scrollWidth > select.clientWidth + 1) cut.push({ text: select.value, by: 'select' });
    add(select.getBoundingClientRect(), select, `<select ${select.value}>`);
  }
  for (const t of root.querySelectorAll('svg text')) {
    const text = t.textContent.trim();
    if (!text || !shown(t)) continue;
    const rect = t.getBoundingClientRect();
    if (rect.width < 0.5) continue;
    add(rect, t, text);   // (an svg hides what overflows it: add() finds the text cut off)
  }
  for (const el of root.querySelectorAll('*')) {     // an ellipsis is text cut off too
    const s = getComputedStyle(el);
    if (s.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1 && shown(el)
        && onScreen(el.getBoundingClientRect())) {
      cut.push({ text: el.textContent.slice(0, 60), by: 'ellipsis' });
    }
  }
  const overlaps = [];
  for (let i = 0; i < texts.length; i++) {
    for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i].r;
      const b = texts[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      // more than a pixel's sliver of each other (a font's line box may touch the next's)
      if (w > 1.5 && h > 1.5 && !texts[i].el.contains(texts[j].el) && !texts[j].el.contains(texts[i].el)) {
        overlaps.push([texts[i].text, texts[j].text]);
      }
    }
  }
  const box = root.getBoundingClientRect();
  const outside = texts.filter((t) => t.r.right > box.right + 1 || t.r.left < box.left - 1).map((t) => t.text);
  return { count: texts.length, overlaps, cut, outside };
}"""

# The colour of each line of the visible marks of a trend, by its legend; and the line paths'
# strokes on screen.
COLORS_JS = """root => ({
  legend: [...root.querySelectorAll('.nnmodes-legend-item')].map((i) => [i.dataset.label, i.dataset.color]),
  strokes: [...root.querySelectorAll('.bqplot .curve path.line')]
    .filter((p) => p.closest('g[style*="display: none"]') === null && getComputedStyle(p).display !== 'none')
    .map((p) => getComputedStyle(p).stroke),
})"""

# Where the grid's panels are: [class, left, top] of each.
GRID_JS = """root => [...root.querySelectorAll(':scope .nnmodes-grid > .nnmodes-panel')].map((p) => {
  const r = p.getBoundingClientRect();
  return [p.classList[p.classList.length - 1], Math.round(r.left), Math.round(r.top), Math.round(r.width)];
})"""


def _shots() -> Path | None:
    folder = os.environ.get("NNMODES_SCREENSHOTS")
    return Path(folder) if folder else None


def _wait_marks(lab_server, marks, timeout):
    deadline = time.monotonic() + timeout
    for mark in marks:
        while not (lab_server.root_dir / mark).exists():
            assert time.monotonic() < deadline, f"{mark}: the training cell did not end"
            time.sleep(0.5)


# The mean r + g + b of the text drawn in the top 12 rows of a canvas (the first label; the
# canvas is transparent elsewhere there)
CANVAS_TEXT_JS = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, 12).data;
  let sum = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 128) { sum += d[i] + d[i + 1] + d[i + 2]; n++; }
  return n ? sum / n : null;
}"""


def _switch_theme(page, name):
    """Settings > Theme > `name`, as a person does; waits for the page to carry it."""
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item").filter(has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-item").filter(has_text=re.compile(f"^{name}$")).click()
    light = "true" if name == "JupyterLab Light" else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=20_000)


def _settle(page, roots):
    """Wait until the widgets' boxes stop moving (the grid, the canvases and bqplot's figures
    follow a new width)."""
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = [root.evaluate("e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }")
               for root in roots]
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            return
        time.sleep(0.2)


def _scroll_on(root):
    """Scroll the notebook by most of a screen; whether it moved."""
    return root.evaluate("""e => {
      let n = e.parentElement;
      while (n && !(n.scrollHeight > n.clientHeight && /auto|scroll/.test(getComputedStyle(n).overflowY))) n = n.parentElement;
      const before = n.scrollTop;
      n.scrollBy(0, window.innerHeight - 200);
      return n.scrollTop !== before;
    }""")


# Whether every bqplot figure on screen is laid out for its width: bqplot lays a figure out again
# when it becomes visible (300 ms later), so a figure resized off screen keeps its former plot
# area until then; its margins (axes) take 60 to 100 px of its width.
LAID_OUT_JS = """root => { const view = (""" + VIEW_JS + """)(root);
  return [...root.querySelectorAll('.bqplot.figure')].every((f) => {
  const r = f.getBoundingClientRect();
  if (r.bottom <= view.top || r.top >= view.bottom || f.offsetParent === null) return true;
  const plot = f.querySelector('rect.plotarea_background');
  const margins = f.clientWidth - Number(plot?.getAttribute('width'));
  return margins > 0 && margins < 120;
}); }"""


def _measure(page, root, timeout=10.0):
    """What MEASURE_JS finds on screen, once the figures on screen are laid out for the width."""
    page.wait_for_function(f"root => ({LAID_OUT_JS})(root)", arg=root.element_handle(),
                           timeout=timeout * 1000)
    return root.evaluate(MEASURE_JS)


def _read_through(page, root, shots, stem):
    """Read `root` a screenful at a time, as a person scrolls: each screen is measured and kept
    as a screenshot; returns every screen's findings together."""
    root.evaluate("e => e.scrollIntoView({block: 'start'})")
    total = {"count": 0, "overlaps": [], "cut": [], "outside": []}
    for screen in range(12):
        found = _measure(page, root)
        page.screenshot(path=str(shots / f"{stem}-{screen}.png"))
        total["count"] += found["count"]
        for key in ("overlaps", "cut", "outside"):
            total[key] += found[key]
        ended = root.evaluate(f"e => e.getBoundingClientRect().bottom <= ({VIEW_JS})(e).bottom")
        if ended or not _scroll_on(root):
            break
    return total


def test_dashboards_read_at_a_glance_at_both_widths_and_themes(page, lab_server, console_errors, tmp_path):
    shots = _shots() or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    write_notebook(lab_server.root_dir / "layout.ipynb", CELLS)
    open_notebook(page, lab_server, "layout.ipynb")
    run_all_cells(page)
    _wait_marks(lab_server, ("mlp_done", "resnet_done"), 2 * TRAIN_SECONDS + 300)
    page.wait_for_function("() => document.querySelectorAll('.nnmodes-dashboard').length === 2 "
                           "&& document.querySelectorAll('.nnmodes-compare').length === 1", timeout=120_000)
    dashboards = page.locator(".nnmodes-dashboard")
    roots = {"mlp": dashboards.nth(0), "resnet": dashboards.nth(1), "compare": page.locator(".nnmodes-compare")}
    for name in ("mlp", "resnet"):   # the panels have drawn what the run recorded
        for panel in ("nnmodes-trend", "nnmodes-spectrum", "nnmodes-neurons"):   # once looked at
            wait_looking(page, roots[name].locator(f".{panel}"),
                         "el => Number(el.getAttribute('data-frames')) >= 1")
    wait_looking(page, roots["resnet"].locator(".nnmodes-trend"),
                 "el => el.querySelectorAll('.nnmodes-legend-item').length >= 10", timeout=30)

    seen = {}
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        if theme != "JupyterLab Light":
            _switch_theme(page, theme)
        # the canvas panels' text takes the theme's colour (the runs have ended: no new frame
        # redraws it)
        label = roots["mlp"].locator(".nnmodes-neurons canvas").evaluate(CANVAS_TEXT_JS)
        dark = theme.endswith("Dark")
        assert label is not None and ((label > 384) if dark else (label < 384)), (theme, label)
        # ... and is drawn at its panel's width, not wider and shrunk to fit (at a theme change
        # the panel read no width: drawn at 700 px in a 474 px panel, the labels were tiny)
        over = page.evaluate("() => [...document.querySelectorAll('.nnmodes-neurons canvas, "
                             ".nnmodes-radiograph canvas')].filter(c => c.clientWidth)"
                             ".map(c => c.width - c.parentElement.clientWidth)")
        assert over and max(over) <= 0, (theme, over)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 1000})
            _settle(page, list(roots.values()))
            for name, root in roots.items():
                where = f"{name} at {width} px, {theme}"
                stem = f"{name}-{width}-{theme.split()[-1].lower()}"
                found = _read_through(page, root, shots, stem)
                assert found["count"] > 20, (where, found["count"])
                assert not found["overlaps"], (where, found["overlaps"][:10])
                assert not found["cut"], (where, found["cut"][:10])
                assert not found["outside"], (where, found["outside"][:10])
                root.evaluate("e => e.scrollIntoView({block: 'start'})")
                if name == "compare":
                    continue
                colors = root.locator(".nnmodes-trend").evaluate(COLORS_JS)
                legend = dict(colors["legend"])
                assert len(legend) >= 3 and len(set(legend.values())) == len(legend), (where, legend)
                # each layer's line is drawn in its legend's colour (the others: phase rules)
                rgb = {f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in legend.values()}
                assert rgb <= set(colors["strokes"]), (where, legend, colors["strokes"])
                seen[(name, theme)] = legend
                grid = root.evaluate(GRID_JS)
                wide = root.evaluate("e => e.getBoundingClientRect().width") >= 900
                columns = len({left for _, left, _, _ in grid})
                assert columns == (2 if wide else 1), (where, grid)
        # the theme's text colour reaches the panels' text and the axes' labels
        text = roots["mlp"].locator(".nnmodes-trend .nnmodes-title").evaluate("e => getComputedStyle(e).color")
        axis = roots["mlp"].locator(".nnmodes-trend .bqplot text.axislabel").first.evaluate(
            "e => getComputedStyle(e).fill")
        brightness = [sum(int(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3]) for c in (text, axis)]
        dark = theme.endswith("Dark")
        assert all((b > 384) if dark else (b < 384) for b in brightness), (theme, text, axis)
    # the dark theme has its own, lighter shades of the same families
    assert seen[("mlp", "JupyterLab Dark")] != seen[("mlp", "JupyterLab Light")]
    print(f"screenshots: {shots}")
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
