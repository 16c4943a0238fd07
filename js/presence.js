import { onRoot } from "./root.js";

// Tell the kernel that a view of this model came into sight or went out of it: the kernel builds
// frames only for panels with a view in sight (nnmodes_widgets/widgets/presence.py). A view counts
// from its render, then as long as its panel (the closest `.rootClass`, else `el`) is in the
// viewport: scrolled out of sight, in a hidden tab, or gone (its cleanup: output cleared, cell
// run again, notebook closed), it builds nothing. In JupyterLab on two cores a frame cost a small
// ResNet's training ~10 ms, the browser's drawing included, whether anyone looked or not; with
// the frames stopped its background analyses ran every 1.5 s instead of every 10-15 s.
// A panel still empty (data-empty: waiting for its first result) counts wherever it is: it waits
// at the end of the dashboard's grid, and its first data brings it to its place, where a person
// looks (counted out of sight, a trend laid out at the end got no frame, and stayed there).
// The panel's root says whether it is in the viewport (data-in-sight), for the status line's ages.
// Returns the cleanup's half.
export const VIEWS_EVENT = "nnmodes-views";

export function reportView(model, el = null, rootClass = null) {
  let counted = true; // a view that renders is in sight until its panel is seen not to be
  tell(model, 1);
  const watchers = [];
  if (el && typeof IntersectionObserver === "function") {
    let inSight = true;
    let root = null;
    const recount = () => {
      const now = inSight || Boolean(root?.hasAttribute("data-empty"));
      if (now !== counted) {
        counted = now;
        tell(model, counted ? 1 : -1);
      }
    };
    const sight = new IntersectionObserver((entries) => {
      const entry = entries[entries.length - 1]; // the newest state of the one element
      inSight = entry.isIntersecting;
      entry.target.setAttribute("data-in-sight", inSight ? "1" : "0");
      recount();
    });
    const emptiness = typeof MutationObserver === "function" ? new MutationObserver(recount) : null;
    watchers.push(sight, ...(emptiness ? [emptiness] : []));
    const watch = (found) => {
      root = found;
      sight.observe(found);
      emptiness?.observe(found, { attributes: true, attributeFilter: ["data-empty"] });
    };
    if (rootClass) onRoot(el, rootClass, watch);
    else watch(el);
  }
  return () => {
    for (const w of watchers.splice(0)) w.disconnect();
    if (counted) tell(model, -1);
    counted = false;
  };
}

function tell(model, change) {
  try {
    model.send({ event: VIEWS_EVENT, change });
  } catch {
    // the widget was closed by the kernel (its comm is gone): nobody is left to tell
  }
}
