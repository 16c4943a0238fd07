// The JupyterLab (and Jupyter Notebook 7) extension of nnmodes_widgets: the Runs panel in the left
// sidebar (panel.js), .nnmodes files opened from the file browser (filetype.js), and the notebooks
// they open, executed once open (open.js). The listing comes from the server extension (api.js).
import { ILayoutRestorer } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { registerFileType } from './filetype';
import { runIcon } from './icon';
import { openRuns, watchAutorun } from './open';
import { RunsPanel } from './panel';

const OPEN = 'nnmodes-widgets:open-runs';
const SHOW = 'nnmodes-widgets:show-runs';

/** The Runs panel, the open/compare command, the .nnmodes file type. */
const runs = {
  id: 'nnmodes-widgets:runs',
  description: 'A Runs panel listing the nnmodes run files under the server root; opening runs in notebooks.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate(app, restorer) {
    app.commands.addCommand(OPEN, {
      label: args => ((args.paths || []).length > 1 ? 'Compare Runs' : 'Open Run'),
      caption: 'Open a notebook showing the run (or comparing the runs)',
      icon: runIcon,
      execute: async args => {
        try {
          return await openRuns(app, args.paths || []);
        } catch (error) {
          // shown in the page: a listing or a save the server refused
          void showErrorMessage('Could not open the run', error);
          throw error;
        }
      }
    });

    const panel = new RunsPanel({ open: paths => app.commands.execute(OPEN, { paths }).catch(() => undefined) });
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, 'nnmodes-runs');
    }
    app.commands.addCommand(SHOW, {
      label: 'Show nnmodes Runs',
      execute: () => app.shell.activateById(panel.id)
    });

    registerFileType(app, path => app.commands.execute(OPEN, { paths: [path] }));
  }
};

/** Runs the notebooks the open command created, where they open (this page or another tab). */
const autorun = {
  id: 'nnmodes-widgets:autorun',
  description: 'Executes the notebooks opened from the Runs panel once they open.',
  autoStart: true,
  requires: [INotebookTracker],
  activate(app, tracker) {
    watchAutorun(tracker);
  }
};

export default [runs, autorun];
