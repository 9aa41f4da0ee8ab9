# The benchmark's Python handler (bench/lambda.sh): answers at once with the message it
# got; the route is two-way, so switchboard sends the body back to the client.
def handler(event, context):
    return {"statusCode": 200, "body": event["body"]}
