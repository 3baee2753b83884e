#!/usr/bin/env node
// The JavaScript peer of peng's Hugging Face tokenizer (tests/data/hf_tokenizer_real_test.cc):
// encodes text with @lenml/tokenizers, a JavaScript port of Hugging Face's tokenizers
// (transformers.js), reading the same tokenizer.json and tokenizer_config.json as peng.
//
//   node hf_tokenizer_peer.js JS_DIR TOKENIZER_DIR INPUT [--json]
//
// JS_DIR holds node_modules/@lenml/tokenizers (scripts/fetch_corpus.sh: data/js_tokenizers).
// INPUT is a UTF-8 text file, encoded whole; with --json it is a JSON array of strings, each
// encoded on its own. Prints JSON: {"ids": [...], "decoded": "..."} per text (an array of them
// with --json). Runs offline: nothing is fetched.
//
// encode is called with add_special_tokens: false, so that no post-processor adds a BOS or
// anything else; that is Hugging Face's encode(text, add_special_tokens=False), which is what
// peng's encode gives. Special tokens written in the text are still matched (as in Hugging
// Face, where add_special_tokens does not control that). decode keeps special tokens and does
// no clean-up of spaces, so it shows the text the ids stand for.
'use strict';
const fs = require('fs');
const path = require('path');

function main() {
  const [js_dir, tokenizer_dir, input, flag] = process.argv.slice(2);
  if (!js_dir || !tokenizer_dir || !input || (flag !== undefined && flag !== '--json')) {
    console.error('usage: node hf_tokenizer_peer.js JS_DIR TOKENIZER_DIR INPUT [--json]');
    process.exit(2);
  }
  const lib = path.join(path.resolve(js_dir), 'node_modules', '@lenml', 'tokenizers');
  const { TokenizerLoader } = require(lib);
  const read_json = (name) => JSON.parse(fs.readFileSync(path.join(tokenizer_dir, name), 'utf8'));
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: read_json('tokenizer.json'),
    tokenizerConfig: read_json('tokenizer_config.json'),
  });
  const encode = (text) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const decoded = ids.length === 0 ? '' : tokenizer.decode(ids, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: false,
    });
    return { ids, decoded };
  };
  const text = fs.readFileSync(input, 'utf8');
  const result = flag === '--json' ? JSON.parse(text).map(encode) : encode(text);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main();
