import { describe, expect, it } from "vitest";
import { findingModule, findingRow, newestFirst } from "../../js/findings.js";

const frozen = { step: 30, kind: "not_learning", layer: "2.weight", severity: "warning",
  message: "2.weight: weights have not changed since step 30 (frozen?)", ended: null,
  panel: "trend", span: [30, 80] };

describe("findings strip", () => {
  it("lists the newest first", () => {
    const older = { ...frozen, step: 10, kind: "heavy_tail" };
    expect(newestFirst([older, frozen])).toEqual([frozen, older]);
  });
  it("selects the module of a finding's layer, or nothing for the whole network", () => {
    const layers = ["0", "2", "features.3"];
    expect(findingModule(frozen, layers)).toBe("2");
    expect(findingModule({ ...frozen, layer: "features.3:relu#0" }, layers)).toBe("features.3");
    expect(findingModule({ ...frozen, layer: "" }, layers)).toBe("");
  });
});

describe("a finding's row", () => {
  it("is its sentence with its severity, and the step it ended at once it ended", () => {
    globalThis.document = {
      createElement: (tag) => ({ tag, dataset: {}, children: [], className: "", textContent: "",
        append(...nodes) { this.children.push(...nodes); } }),
    };
    const row = findingRow(frozen);
    expect(row.className).toBe("nnmodes-finding nnmodes-warning");
    expect(row.children.map((c) => c.textContent)).toEqual(["warning", frozen.message]);
    const ended = findingRow({ ...frozen, ended: 120 });
    expect(ended.children[1].textContent).toBe(`${frozen.message} · ended at step 120`);
    const moment = findingRow({ ...frozen, kind: "phase_change", ended: 30 });
    expect(moment.children[1].textContent).toBe(frozen.message);
    delete globalThis.document;
  });
});
