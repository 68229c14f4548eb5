#!/usr/bin/env node
// The CLI lives in the bundle so that it starts as fast as the extension does.
require('../dist/cli.js').run();
