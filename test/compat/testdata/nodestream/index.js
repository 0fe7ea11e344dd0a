// A Node.js function that streams its response (aws-lambda-ric's
// awslambda.streamifyResponse), for the response streaming compatibility test.
//
// Event: {"chunks": N, "gate": URL, "delayMs": D, "fail": bool, "http": bool}. Before each
// chunk after the first it waits for GET <gate>/<i> to answer (the test answers once it
// has received chunk i-1), then D ms more; with fail it throws after the chunks. Through a
// function URL, that event is the request's body.
const http = require('http');

const waitGate = (url) =>
  new Promise((resolve, reject) => {
    http.get(url, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error('gate ' + url + ' never opened'))));
    }).on('error', reject);
  });

exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.version === '2.0' && event.requestContext) {
    event = JSON.parse(event.body || '{}'); // through a function URL: the body is the event above
  }
  if (event.http) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { 'x-custom': 'yes' },
    });
  } else {
    responseStream.setContentType('text/plain');
  }
  for (let i = 0; i < event.chunks; i++) {
    if (i > 0) {
      if (event.gate) await waitGate(event.gate + '/' + i);
      if (event.delayMs) await new Promise((r) => setTimeout(r, event.delayMs));
    }
    console.log('writing chunk', i);
    responseStream.write('chunk ' + i + '\n');
  }
  if (event.fail) {
    throw new Error('the stream broke');
  }
  responseStream.end();
});
