// .nnmodes run files in the file browser: their own file type and icon, and opening one (double
// click, Open) opens a notebook showing the run (open.js) instead of a viewer. The opener's model
// factory has no file format, so the run file's content is never downloaded.
import { ABCWidgetFactory, DocumentWidget, TextModelFactory } from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import { runIcon } from './icon';

export const FILE_TYPE = 'nnmodes-run';
const MODEL = 'nnmodes-run';
const FACTORY = 'nnmodes run';

class RunModelFactory extends TextModelFactory {
  get name() {
    return MODEL;
  }

  get contentType() {
    return 'file';
  }

  get fileFormat() {
    return null;
  }
}

// A short-lived document widget: it opens the notebook, then closes itself.
class RunOpenerFactory extends ABCWidgetFactory {
  constructor(options, openRun) {
    super(options);
    this._openRun = openRun;
  }

  createNewWidget(context) {
    const content = new Widget();
    content.addClass('nnmodes-run-opener');
    content.node.textContent = `Opening a notebook for ${context.localPath}…`;
    const widget = new DocumentWidget({ content, context });
    widget.title.icon = runIcon;
    this._openRun(context.localPath).then(
      () => widget.dispose(),
      error => {
        content.node.textContent = `Could not open a notebook for ${context.localPath}: ${error.message || error}`;
      }
    );
    return widget;
  }
}

export function registerFileType(app, openRun) {
  const registry = app.docRegistry;
  registry.addFileType({
    name: FILE_TYPE,
    displayName: 'nnmodes run',
    extensions: ['.nnmodes'],
    mimeTypes: ['application/x-nnmodes-run'],
    contentType: 'file',
    fileFormat: 'base64',
    icon: runIcon
  });
  registry.addModelFactory(new RunModelFactory());
  registry.addWidgetFactory(new RunOpenerFactory({
    name: FACTORY,
    label: 'Notebook with the run dashboard',
    modelName: MODEL,
    fileTypes: [FILE_TYPE],
    defaultFor: [FILE_TYPE],
    readOnly: true
  }, openRun));
}
