// The icon of the Runs panel's tab and of .nnmodes files in the file browser.
import { LabIcon } from '@jupyterlab/ui-components';

import runSvg from '../style/run.svg';

export const runIcon = new LabIcon({ name: 'nnmodes-widgets:run', svgstr: runSvg });
