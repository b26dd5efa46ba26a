// Drives the unmodified @actions/cache package: node drive.js save|restore
// <path> <key> [restoreKey...]. Prints {"key": ...} (the saved or matched
// key, null on a miss) on stdout, then "ms": the milliseconds each phase of
// the package took (download and extract on a restore, create and upload
// on a save), timed around its own functions, which it calls unchanged.
const cache = require('@actions/cache');
const httpClient = require('@actions/cache/lib/internal/cacheHttpClient');
const tar = require('@actions/cache/lib/internal/tar');

const ms = {};
function timed(mod, fn, phase) {
  const orig = mod[fn];
  if (typeof orig !== 'function') return;
  mod[fn] = async function (...args) {
    const t0 = process.hrtime.bigint();
    try {
      return await orig.apply(this, args);
    } finally {
      ms[phase] = (ms[phase] || 0) + Number(process.hrtime.bigint() - t0) / 1e6;
    }
  };
}
timed(httpClient, 'downloadCache', 'download');
timed(tar, 'extractTar', 'extract');
timed(tar, 'createTar', 'create');
timed(httpClient, 'saveCache', 'upload');

async function main() {
  const [mode, path, key, ...restoreKeys] = process.argv.slice(2);
  let result;
  if (mode === 'save') {
    const id = await cache.saveCache([path], key);
    result = id === -1 ? null : key; // -1: the save failed (logged on stderr)
  } else if (mode === 'restore') {
    const matched = await cache.restoreCache([path], key, restoreKeys);
    result = matched === undefined ? null : matched;
  } else {
    throw new Error('mode must be save or restore');
  }
  process.stdout.write(JSON.stringify({ key: result, ms }) + '\n');
}

main().catch(err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
