// Reads {"key": ..., "texts": [...]} on stdin and prints, for each JSON
// text, what the flow-step sender computes: JSON.stringify(JSON.parse(text))
// and sha256(JSON.stringify(payload) + key) in hex. Used to (re)generate
// flowstep.json and by tests/providers/test_flowstep.py when node exists.
const { createHash } = require('crypto');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { key, texts } = JSON.parse(input);
  const vectors = texts.map((text) => {
    const stringified = JSON.stringify(JSON.parse(text));
    const signature = createHash('sha256').update(`${stringified}${key}`, 'utf-8').digest('hex');
    return { text, stringified, signature };
  });
  process.stdout.write(JSON.stringify({ key, vectors }, null, 1));
});
