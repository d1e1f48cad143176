#!/usr/bin/env node
// Runs the compiled CLI (npm start builds it; see scripts/ensure-deps.mjs).
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exitCode = code; }, (err) => {
  console.error(err);
  process.exit(1);
});
