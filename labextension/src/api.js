// The server extension's read-only listing: GET {baseUrl}nnmodes/runs (nnmodes_widgets/jupyter/server_extension.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The runs under `folder` (relative to the server's root; '' for the root itself), its
 * subfolders too: {folder, now, truncated, runs: [{path, name, status, steps, started, updated, model,
 * error}]}; status "unreadable" (the reason in error) for a file named like a run that is not one.
 * Paths are relative to the server's root. Throws ServerConnection.ResponseError on an HTTP error.
 */
export async function fetchRuns(folder = '', settings = ServerConnection.makeSettings()) {
  const query = URLExt.objectToQueryString({ folder, recursive: '1' });
  const url = URLExt.join(settings.baseUrl, 'nnmodes', 'runs') + query;
  const response = await ServerConnection.makeRequest(url, { cache: 'no-store' }, settings);
  if (!response.ok) {
    throw await ServerConnection.ResponseError.create(response);
  }
  return response.json();
}
