#!/usr/bin/env node
// The `relay` command: linked by npm at install time, before `npm run build` makes dist/.
import '../dist/main.js';
