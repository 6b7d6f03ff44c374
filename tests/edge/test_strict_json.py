"""The strict JSON filter's table, rendered from the descriptor set: every write route of the
contract with the shape its body must have."""

from server.edge.envoy import API_PACKAGE, DESCRIPTOR_PATH
from server.edge.strict_json import WRITE_METHODS, lua_pattern, routes_and_messages


def test_path_templates_become_anchored_lua_patterns() -> None:
    assert lua_pattern("/api/users/{user_id}/roles") == "^/api/users/[^/]+/roles/?$"
    assert lua_pattern("/api/requests/{id}:approve") == "^/api/requests/[^/]+:approve/?$"
    assert lua_pattern("/api/api-keys/{name=**}") == "^/api/api%-keys/.+/?$"


def test_every_write_route_is_in_the_table_custom_verbs_first() -> None:
    routes, messages = routes_and_messages(DESCRIPTOR_PATH, API_PACKAGE)
    by_route = {(route["method"], route["pattern"]): route for route in routes}
    assert {route["method"] for route in routes} <= set(WRITE_METHODS)
    roles = by_route[("PUT", "^/api/users/[^/]+/roles/?$")]
    assert (roles["body"], roles["prefix"], roles["required"]) == ({"list": "string"}, "role_names", True)
    login = by_route[("POST", "^/api/auth/login/?$")]
    assert (login["body"], login["prefix"]) == ({"message": "adplane.v1.LoginRequest"}, "")
    # A field is known by its proto name and its JSON name, and reported by its proto name.
    workspace = messages["adplane.v1.Workspace"]
    assert workspace["create_time"] == workspace["createTime"] == {"name": "create_time", "kind": "string"}
    specific = [route["pattern"].find(":") > 0 for route in routes]
    assert specific == sorted(specific, reverse=True)
