import { countFrames, panelHeader } from "./header.js";

// Header of the spectrum panel; the plots are bqplot figures beside it.
export default {
  async render({ model, el }) {
    const { onData } = panelHeader(model, el, "nnmodes-spectrum");
    return countFrames(model, "mark", onData);
  },
};
