// The benchmark's Node handler for serverless-offline (bench/lambda.sh); the same code as
// ../node/app.mjs, which switchboard runs. The $default route has
// `routeResponseSelectionExpression: $default` (a route response, as switchboard's
// `two_way`), so serverless-offline sends the returned body back to the client.
exports.handler = async (event) => ({ statusCode: 200, body: event.body });

// serverless-offline refuses every handshake (502) unless a $connect route exists, while
// AWS and switchboard accept connections without one; this accepts them.
exports.connect = async () => ({ statusCode: 200 });
