"""The dashboard of the architectures people train, in a real JupyterLab: a pre-activation ResNet
(functional ReLU, residual sums, BatchNorm) on images and a character GPT (token ids, causal
attention, tied head), each trained the way people write it — default budget, no sleeps — show
every panel with data, nothing switched off, no console error."""

import time

from .conftest import assert_no_console_errors, error_outputs, open_notebook, run_all_cells, write_notebook

TRAIN_SECONDS = 12
PANELS = (".nnmodes-trend", ".nnmodes-spectrum", ".nnmodes-neurons",
          ".nnmodes-radiograph:not(.nnmodes-characteristic-maps)", ".nnmodes-characteristic-maps")
MODELS = """import time, torch
import torch.nn.functional as F
from torch import nn
import nnmodes_widgets as nm
torch.manual_seed(0)

class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride > 1 or cin != cout else None
    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + skip

class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 32, 1), Block(32, 64, 2))
        self.bn, self.fc = nn.BatchNorm2d(64), nn.Linear(64, 10)
    def forward(self, x):
        return self.fc(F.relu(self.bn(self.blocks(self.stem(x)))).mean(dim=(2, 3)))

class GPT(nn.Module):
    def __init__(self, vocab=40, block=32, dim=48):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.ln1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ln2, self.fc, self.out = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight
    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        b, t, d = x.shape
        q, k, v = (z.view(b, t, 4, d // 4).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, 2))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return self.head(x)

def report(monitor, mark):
    monitor.detach()
    print("switched off", [n for n in monitor.notices if "switched off" in n.message],
          "errors", monitor.errors)
    open(mark, "w").write(str(monitor.current_step))"""
CELLS = [
    MODELS,
    """resnet = ResNet()
opt = torch.optim.AdamW(resnet.parameters(), lr=1e-3)
monitor = nm.Monitor(resnet, opt, every=5)
monitor.dashboard()""",
    f"""images, labels = torch.randn(512, 3, 16, 16), torch.randint(0, 10, (512,))
start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, 512, (32,))
    opt.zero_grad(); F.cross_entropy(resnet(images[idx]), labels[idx]).backward(); opt.step()
report(monitor, "resnet_done")""",
    """gpt = GPT()
opt = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
monitor = nm.Monitor(gpt, opt, every=5)
monitor.dashboard()""",
    f"""text = torch.randint(0, 40, (4096,))
start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    at = torch.randint(0, 4096 - 33, (16,))
    x = torch.stack([text[a:a + 32] for a in at]); y = torch.stack([text[a + 1:a + 33] for a in at])
    opt.zero_grad(); F.cross_entropy(gpt(x).flatten(0, 1), y.flatten()).backward(); opt.step()
report(monitor, "gpt_done")""",
]


def test_resnet_and_gpt_dashboards_show_every_panel(page, lab_server, console_errors, tmp_path):
    write_notebook(lab_server.root_dir / "architectures_live.ipynb", CELLS)
    open_notebook(page, lab_server, "architectures_live.ipynb")
    run_all_cells(page)
    deadline = time.monotonic() + 2 * TRAIN_SECONDS + 240
    for mark in ("resnet_done", "gpt_done"):
        while not (lab_server.root_dir / mark).exists():
            assert time.monotonic() < deadline, f"{mark}: the training cell did not end"
            time.sleep(0.5)
    dashboards = page.locator(".nnmodes-dashboard")
    page.wait_for_function("() => document.querySelectorAll('.nnmodes-dashboard').length === 2",
                           timeout=60_000)
    for which, name in enumerate(("ResNet", "GPT")):
        dashboard = dashboards.nth(which)
        for selector in PANELS:
            panel = dashboard.locator(selector)
            panel.wait_for(timeout=30_000)
            # looked at: a panel out of sight gets its frames when it comes into sight
            panel.scroll_into_view_if_needed()
            try:
                page.wait_for_function("el => Number(el.getAttribute('data-frames')) >= 1",
                                       arg=panel.element_handle(), timeout=60_000)
            except Exception as exc:   # say which panel, and what the dashboard said
                status = dashboard.locator(".nnmodes-status").inner_text()
                raise AssertionError(f"{name} {selector}: no frame drawn; status {status!r}") from exc
        status = dashboard.locator(".nnmodes-status")
        status.scroll_into_view_if_needed()
        page.wait_for_function("el => el.textContent.includes('detached')",
                               arg=status.element_handle(), timeout=30_000)
        assert "error" not in status.inner_text(), (name, status.inner_text())
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    reports = [text.strip() for text in outputs if text.startswith("switched off")]
    assert reports == ["switched off [] errors []"] * 2, reports
    # what the GPT's static radiographs freeze is said under the radiograph panel's title
    note = dashboards.nth(1).locator(".nnmodes-radiograph:not(.nnmodes-characteristic-maps) "
                                     ".nnmodes-note").inner_text()
    assert "scaled_dot_product_attention (attention pattern)" in note, note
    # the ResNet's nine ReLU calls (two per block, one at the end): thin strips grouped by
    # block, shorter than nine full strips (56 px each) even with the class map below them
    neurons = dashboards.nth(0).locator(".nnmodes-neurons canvas")
    assert 0 < neurons.evaluate("c => c.height") < 9 * 56
    assert not error_outputs(page), error_outputs(page)
    page.screenshot(path=str(tmp_path / "architectures.png"), full_page=True)
    assert_no_console_errors(console_errors)
