// Drives the unmodified @actions/cache package: node drive.js save|restore
// <path> <key> [restoreKey...]. Prints {"key": ...} (the saved or matched
// key, null on a miss) on stdout.
const cache = require('@actions/cache');

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
  process.stdout.write(JSON.stringify({ key: result }) + '\n');
}

main().catch(err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
