// Tell the kernel that a view of this model came (render) or went (its cleanup: output cleared,
// cell run again, notebook closed): the kernel builds frames only for panels with a view on
// screen (nnmodes_widgets/widgets/presence.py). Returns the cleanup's half.
export const VIEWS_EVENT = "nnmodes-views";

export function reportView(model) {
  tell(model, 1);
  return () => tell(model, -1);
}

function tell(model, change) {
  try {
    model.send({ event: VIEWS_EVENT, change });
  } catch {
    // the widget was closed by the kernel (its comm is gone): nobody is left to tell
  }
}
