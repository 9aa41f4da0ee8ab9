"""Lambda-style handlers for the group chat (standard library only).

register  ($connect)     puts the connection in its room and names its user, in the
                         response (switchboard's "groups"/"userId"/"state" fields), and
                         tells the room someone arrived.
cleanup   ($disconnect)  tells the room someone left.
transport (messages)     "send": says something to the room; "who": lists who is online.

On AWS these would keep rooms in DynamoDB and loop over post_to_connection; here the
gateway has groups, so a room is one call.
"""
import json

import sb


def _room_of(event):
    return event["requestContext"].get("switchboard", {}).get("state", {}).get("room", "lobby")


def _name_of(event):
    return event["requestContext"].get("switchboard", {}).get("state", {}).get("name", "someone")


def _clean(value, default):
    value = (value or "").strip()[:32]
    return value if value else default


def register(event, context):
    q = event.get("queryStringParameters") or {}
    name = _clean(q.get("name"), "guest")
    room = _clean(q.get("room"), "lobby")
    # The new connection is not in the group yet, so this reaches everybody else.
    sb.send_to_group("room:" + room, {"type": "joined", "name": name})
    return {
        "statusCode": 200,
        "groups": ["room:" + room],
        "userId": name,
        "state": {"name": name, "room": room},
    }


def cleanup(event, context):
    # Membership has already ended, so the room hears about it without the leaver.
    room = _room_of(event)
    sb.send_to_group("room:" + room, {"type": "left", "name": _name_of(event)})
    return {"statusCode": 200}


def transport(event, context):
    route = event["requestContext"]["routeKey"]
    room = _room_of(event)
    try:
        body = json.loads(event.get("body") or "{}")
    except ValueError:
        body = {}
    if route == "send":
        text = str(body.get("text", ""))[:2000]
        if text:
            sb.send_to_group("room:" + room, {"type": "message", "from": _name_of(event), "text": text})
        return {"statusCode": 200}
    if route == "who":
        return {"statusCode": 200, "body": json.dumps({"type": "online", "room": room, "names": sb.names_in("room:" + room)})}
    return {"statusCode": 200, "body": json.dumps({"type": "help", "text": 'send {"action":"send","text":"..."} or {"action":"who"}'})}
