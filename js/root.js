// Test hooks on a widget's root element (SPEC 6): data-frames counts the frames this view drew,
// data-step names the training step of the frame on screen. The root is an ancestor created by
// ipywidgets; a view is attached to it only after render() returns, so attributes wait for it.

// Call fn(root) once `el` is inside its root (the closest `.rootClass`): at once, or on one of
// the next animation frames (about ten seconds of them).
export function onRoot(el, rootClass, fn) {
  let tries = 0;
  (function settle() {
    const root = el.closest(`.${rootClass}`);
    if (root) fn(root);
    else if (tries++ < 600) requestAnimationFrame(settle);
  })();
}

export function rootCounter(el, rootClass) {
  let frames = 0;
  let step = null;
  let root = null;

  function apply() {
    if (!root) return;
    root.setAttribute("data-frames", String(frames));
    if (step !== null) root.setAttribute("data-step", String(step));
  }
  onRoot(el, rootClass, (found) => {
    root = found;
    apply();
  });

  return {
    frame(newStep) {
      frames += 1;
      step = newStep;
      apply();
    },
    get frames() {
      return frames;
    },
  };
}

// Run fn once per burst of synchronous calls: one comm message sets several attributes, each
// firing its own change event, and should count as one frame.
export function coalesce(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}

// A widget reference travels as "IPY_MODEL_<id>"; anywidget resolves ids to live models.
export function referencedModel(model, name) {
  return modelOf(model, model.get(name));
}

export function modelOf(model, ref) {
  return model.widget_manager.get_model(ref.slice("IPY_MODEL_".length));
}
