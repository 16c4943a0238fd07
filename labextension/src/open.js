// Opening runs: a new notebook next to the run file whose first cell shows the run, executed once
// opened. The notebook may open in another browser tab (Jupyter Notebook 7 opens each notebook in
// its own), so "execute it" is handed over through localStorage: whichever page opens the notebook
// runs it (watchAutorun), once.
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookActions } from '@jupyterlab/notebook';

const AUTORUN_KEY = 'nnmodes-widgets:autorun';
const AUTORUN_TTL = 120_000; // ms a created notebook waits to be opened and run

/** The code of the notebook's first cell: one run's dashboard, or several runs compared. */
export function cellSource(paths) {
  const args = paths.map(p => JSON.stringify(p)); // a JSON string is a Python string literal
  const line = paths.length === 1
    ? `nm.open_run(${args[0]}).dashboard()`
    : `nm.compare(${args.join(', ')})`;
  return `import nnmodes_widgets as nm\n${line}`;
}

/** The notebook's base name: the run's name, or "compare-a-b" for several runs. */
export function notebookStem(paths) {
  const names = paths.map(p => PathExt.basename(p).replace(/\.nnmodes$/, ''));
  if (names.length === 1) {
    return names[0];
  }
  const shown = names.slice(0, 3).join('-');
  return `compare-${shown}${names.length > 3 ? `-and-${names.length - 3}-more` : ''}`;
}

/** `stem`.ipynb in `dir`, or stem-1.ipynb, stem-2.ipynb, ... : the first name not taken. */
async function freeName(contents, dir, stem) {
  const listing = await contents.get(dir, { type: 'directory', content: true });
  const taken = new Set(listing.content.map(item => item.name));
  for (let i = 0; ; i++) {
    const name = i === 0 ? `${stem}.ipynb` : `${stem}-${i}.ipynb`;
    if (!taken.has(name)) {
      return PathExt.join(dir, name);
    }
  }
}

function readAutorun() {
  try {
    const pending = JSON.parse(window.localStorage.getItem(AUTORUN_KEY) || '{}');
    const now = Date.now();
    return Object.fromEntries(Object.entries(pending).filter(([, until]) => until > now));
  } catch {
    return {};
  }
}

function writeAutorun(pending) {
  try {
    window.localStorage.setItem(AUTORUN_KEY, JSON.stringify(pending));
  } catch {
    // no storage (private mode): the notebook opens without running
  }
}

/**
 * Create a notebook showing the runs `paths` (relative to the server's root) next to the first
 * one, open it and have it executed; resolves to the notebook's path.
 */
export async function openRuns(app, paths) {
  if (!paths.length) {
    throw new Error('no run to open');
  }
  const { contents, kernelspecs } = app.serviceManager;
  const dir = PathExt.dirname(paths[0]);
  const path = await freeName(contents, dir, notebookStem(paths));
  // The kernel starts in the notebook's folder: paths relative to it keep the notebook portable.
  const relative = paths.map(p => PathExt.relative(dir, p));
  await kernelspecs.ready;
  const specs = kernelspecs.specs;
  const spec = specs && specs.kernelspecs[specs.default];
  const metadata = spec
    ? { kernelspec: { name: spec.name, display_name: spec.display_name, language: spec.language } }
    : {};
  const content = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata,
    cells: [{
      cell_type: 'code',
      id: 'nnmodes-open',
      metadata: {},
      execution_count: null,
      outputs: [],
      source: cellSource(relative)
    }]
  };
  await contents.save(path, { type: 'notebook', format: 'json', content });
  writeAutorun({ ...readAutorun(), [path]: Date.now() + AUTORUN_TTL });
  await app.commands.execute('docmanager:open', { path, factory: 'Notebook' });
  return path;
}

/** Run every cell of each notebook openRuns created, when it opens in this page. */
export function watchAutorun(tracker) {
  tracker.widgetAdded.connect(async (_, panel) => {
    await panel.context.ready;
    const pending = readAutorun();
    const path = panel.context.localPath;
    if (!(path in pending)) {
      return;
    }
    delete pending[path];
    writeAutorun(pending);
    await panel.sessionContext.ready;
    if (!panel.isDisposed) {
      await NotebookActions.runAll(panel.content, panel.sessionContext);
    }
  });
}
