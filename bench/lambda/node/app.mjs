// The benchmark's Node handler for switchboard (bench/lambda.sh); the same code as
// sls/handler.js, which serverless-offline runs. Answers at once with the message it got;
// the route is two-way, so switchboard sends the body back to the client.
export const handler = async (event) => ({ statusCode: 200, body: event.body });
