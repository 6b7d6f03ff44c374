"""The Graph API simulator itself, over plain HTTP: Graph's shapes, access rules, control API, faults."""

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from devstack.meta_simulator import FaultKind, SimulatorControl, SimulatorServer
from devstack.meta_simulator.graph_api import SERVED_VERSIONS
from devstack.meta_simulator.schemas import SeededBusiness
from server.config import GRAPH_API_VERSION, Settings

ACCOUNT_FIELDS = "id,name,currency,timezone_name,account_status,disable_reason,spend_cap,amount_spent"


def _error(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    assert error["fbtrace_id"]
    return error


def _create_account(graph: httpx.Client, business: SeededBusiness, name: str) -> dict[str, object]:
    response = graph.post(
        f"/{business.id}/adaccount",
        data={
            "name": name,
            "currency": "USD",
            "timezone_id": "7",
            "end_advertiser": business.id,
            "media_agency": "NONE",
            "partner": "NONE",
        },
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert isinstance(created, dict)
    return created


# Graph API shapes


def test_ad_account_reads_return_requested_fields_with_money_as_strings(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop", spend_cap=5_000, amount_spent=1_234)

    full = graph.get(f"/{account_id}", params={"fields": ACCOUNT_FIELDS}).json()
    default = graph.get(f"/{account_id}").json()

    assert full == {
        "id": account_id,
        "name": "Shop",
        "currency": "USD",
        "timezone_name": "America/Los_Angeles",
        "account_status": 1,
        "disable_reason": 0,
        "spend_cap": "5000",
        "amount_spent": "1234",
    }
    assert default == {"id": account_id, "account_id": account_id.removeprefix("act_")}


def test_unknown_field_is_refused(graph: httpx.Client, control: SimulatorControl, business: SeededBusiness) -> None:
    account_id = control.add_ad_account(business.id, "Shop")

    response = graph.get(f"/{account_id}", params={"fields": "id,balance_of_power"})

    assert (response.status_code, _error(response)["code"]) == (400, 100)


def test_ad_account_creation_requires_graphs_parameters(graph: httpx.Client, business: SeededBusiness) -> None:
    created = _create_account(graph, business, "New")
    missing_partner = graph.post(
        f"/{business.id}/adaccount",
        data={
            "name": "X",
            "currency": "USD",
            "timezone_id": "7",
            "end_advertiser": business.id,
            "media_agency": "NONE",
        },
    )
    bad_timezone = graph.post(
        f"/{business.id}/adaccount",
        data={
            "name": "X",
            "currency": "USD",
            "timezone_id": "9999",
            "end_advertiser": business.id,
            "media_agency": "NONE",
            "partner": "NONE",
        },
    )

    assert str(created["id"]).startswith("act_")
    assert created["account_id"] == str(created["id"]).removeprefix("act_")
    assert _error(missing_partner)["message"] == "(#100) The parameter partner is required"
    assert _error(bad_timezone)["code"] == 100


def test_edges_page_with_cursors_and_absolute_next_links(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    seeded = [control.add_ad_account(business.id, f"Account {n}") for n in range(5)]

    first = graph.get(f"/{business.id}/owned_ad_accounts", params={"limit": 2}).json()
    second = graph.get(first["paging"]["next"]).json()
    last = graph.get(
        f"/{business.id}/owned_ad_accounts", params={"limit": 2, "after": second["paging"]["cursors"]["after"]}
    ).json()

    assert [a["id"] for a in first["data"] + second["data"] + last["data"]] == seeded
    assert first["paging"]["next"].startswith("http://")
    assert "next" not in last["paging"]
    assert graph.get(f"/{business.id}/owned_ad_accounts", params={"after": "bogus"}).status_code == 400


def test_owned_ad_accounts_filter_by_name(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_ad_account(business.id, "Shoes")
    control.add_ad_account(business.id, "Shoes EU")

    def names(operator: str, value: str) -> list[str]:
        filtering = json.dumps([{"field": "name", "operator": operator, "value": value}])
        page = graph.get(f"/{business.id}/owned_ad_accounts", params={"filtering": filtering, "fields": "name"})
        return [account["name"] for account in page.json()["data"]]

    assert names("EQUAL", "Shoes") == ["Shoes"]
    assert names("CONTAIN", "shoes") == ["Shoes", "Shoes EU"]
    unsupported = json.dumps([{"field": "currency", "operator": "EQUAL", "value": "USD"}])
    assert graph.get(f"/{business.id}/owned_ad_accounts", params={"filtering": unsupported}).status_code == 400


def test_batch_answers_each_request_with_code_headers_and_body(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop")
    batch = [
        {"method": "GET", "relative_url": f"{account_id}?fields=name"},
        {"method": "GET", "relative_url": f"/v26.0/{business.id}?fields=name"},
        {"method": "GET", "relative_url": "act_1"},
        {"method": "POST", "relative_url": account_id, "body": "spend_cap=12.50"},
    ]

    items = graph.post("/", data={"batch": json.dumps(batch)}).json()

    assert [item["code"] for item in items] == [200, 200, 400, 200]
    assert json.loads(items[0]["body"]) == {"id": account_id, "name": "Shop"}
    assert json.loads(items[1]["body"])["name"] == "Agency"
    assert json.loads(items[2]["body"])["error"]["error_subcode"] == 33
    assert "X-Ad-Account-Usage" in {header["name"] for header in items[0]["headers"]}
    assert control.ad_account(account_id)["spend_cap"] == 1_250
    calls = control.counters().calls
    assert (calls.http_calls, calls.batch_calls, calls.batched_requests) == (1, 1, 4)


def test_batch_holds_at_most_50_requests(graph: httpx.Client) -> None:
    batch = [{"method": "GET", "relative_url": "act_1"}] * 51

    response = graph.post("/", data={"batch": json.dumps(batch)})

    assert (response.status_code, _error(response)["code"]) == (400, 100)


def test_spend_cap_must_be_whole_minor_units(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop")

    assert graph.post(f"/{account_id}", data={"spend_cap": "1.234"}).status_code == 400
    assert graph.post(f"/{account_id}", data={"spend_cap": "-1"}).status_code == 400
    assert graph.post(f"/{account_id}", data={"spend_cap": "10.5"}).json() == {"success": True}
    assert control.ad_account(account_id)["spend_cap"] == 1_050


def test_every_answer_reports_usage(graph: httpx.Client, control: SimulatorControl, business: SeededBusiness) -> None:
    account_id = control.add_ad_account(business.id, "Shop")
    control.set_usage(app_pct=12, business_pct=93, ad_account_pct=40)

    response = graph.get(f"/{account_id}")

    assert json.loads(response.headers["X-App-Usage"])["call_count"] == 12
    assert json.loads(response.headers["X-Business-Use-Case-Usage"])[business.id][0]["call_count"] == 93
    assert json.loads(response.headers["X-Ad-Account-Usage"])["acc_id_util_pct"] == 40


def test_unversioned_paths_are_refused(simulator: SimulatorServer, business: SeededBusiness) -> None:
    response = httpx.get(f"{simulator.base_url}/{business.id}", headers={"Authorization": f"Bearer {business.token}"})

    assert response.status_code == 400
    assert _error(response)["code"] == 2500


# Tokens and access


def test_token_is_taken_from_the_header_or_the_access_token_parameter(
    simulator: SimulatorServer, business: SeededBusiness
) -> None:
    url = f"{simulator.base_url}/v26.0/{business.id}"

    assert httpx.get(url, params={"access_token": business.token}).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"OAuth {business.token}"}).status_code == 200
    assert _error(httpx.get(url))["code"] == 104
    unknown = _error(httpx.get(url, params={"access_token": "nonsense"}))
    assert (unknown["code"], unknown.get("error_subcode")) == (190, None)


def test_revoked_token_answers_190_460(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.revoke_token(business.token)

    error = _error(graph.get(f"/{business.id}"))

    assert (error["code"], error["error_subcode"], error["type"]) == (190, 460, "OAuthException")
    assert control.counters().objects.revoked_tokens == 1


def test_another_business_reads_as_missing_and_refuses_writes(graph: httpx.Client, control: SimulatorControl) -> None:
    other = control.add_business("Other")
    their_account = control.add_ad_account(other.id, "Theirs")
    their_pixel = control.add_pixel(other.id, "Their pixel")

    read = _error(graph.get(f"/{their_account}"))
    write = graph.post(f"/{their_account}", data={"spend_cap": "1"})
    edge = graph.get(f"/{other.id}/owned_ad_accounts")
    share = graph.post(f"/{their_pixel}/shared_accounts", data={"account_id": "1", "business": other.id})

    assert (read["code"], read["error_subcode"]) == (100, 33)
    assert (write.status_code, _error(write)["code"]) == (403, 200)
    assert _error(edge)["code"] == 200
    assert _error(share)["code"] == 200
    assert control.ad_account(their_account)["spend_cap"] == 0


# Control API


def test_bulk_seed_spreads_10000_accounts_over_20_businesses(
    simulator: SimulatorServer, control: SimulatorControl
) -> None:
    seeded = control.seed(businesses=20, ad_accounts=10_000, pixels=40)

    objects = control.counters().objects
    assert (objects.businesses, objects.ad_accounts, objects.pixels) == (20, 10_000, 40)
    assert len({business.token for business in seeded.businesses}) == 20
    first = seeded.businesses[0]
    page = httpx.get(
        f"{simulator.base_url}/v26.0/{first.id}/owned_ad_accounts",
        params={"limit": 500, "fields": "id"},
        headers={"Authorization": f"Bearer {first.token}"},
    ).json()
    assert len(page["data"]) == 500
    assert "next" not in page["paging"]


def test_reset_forgets_everything(control: SimulatorControl, graph: httpx.Client, business: SeededBusiness) -> None:
    control.add_ad_account(business.id, "Shop")
    control.set_latency(50)
    graph.get(f"/{business.id}")

    control.reset()

    counters = control.counters()
    assert counters.objects.model_dump() == dict.fromkeys(counters.objects.model_dump(), 0)
    assert counters.calls.http_calls == 0


def test_meta_side_changes_show_in_graph_reads(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop")
    pixel_id = control.add_pixel(business.id, "Pixel")

    control.change_ad_account(account_id, account_status=101, amount_spent=77)
    control.change_pixel(pixel_id, last_fired_time="2024-05-01T10:00:00+0000")

    assert graph.get(f"/{account_id}", params={"fields": "account_status,amount_spent"}).json() == {
        "id": account_id,
        "account_status": 101,
        "amount_spent": "77",
    }
    pixel = graph.get(f"/{pixel_id}", params={"fields": "last_fired_time"}).json()
    assert pixel["last_fired_time"] == "2024-05-01T10:00:00+0000"


def test_control_api_refuses_unknown_endpoints_and_bad_bodies(simulator: SimulatorServer) -> None:
    control_url = f"{simulator.base_url}/_control"

    assert httpx.get(f"{control_url}/nothing-here").status_code == 404
    assert httpx.post(f"{control_url}/faults", json={"kind": "meteor"}).status_code == 400
    assert httpx.post(f"{control_url}/faults", content=b"{not json").status_code == 400
    assert httpx.get(f"{control_url}/ad_accounts/act_404").status_code == 404


# Faults


def test_faults_hit_the_next_matching_calls_only(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop")
    control.add_fault(FaultKind.SERVER_ERROR, count=2, path_prefix=f"/v26.0/{account_id}")

    unaffected = graph.get(f"/{business.id}")
    statuses = [graph.get(f"/{account_id}").status_code for _ in range(3)]

    assert unaffected.status_code == 200
    assert statuses == [500, 500, 200]
    assert control.counters().calls.faults_served == 2


def test_rate_limit_fault_says_when_access_returns(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.RATE_LIMIT, code=80004, regain_minutes=3)

    response = graph.get(f"/{business.id}")

    error = _error(response)
    assert (error["code"], error["error_subcode"], error["is_transient"]) == (80004, 2446079, True)
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])[business.id][0]
    assert (usage["call_count"], usage["estimated_time_to_regain_access"]) == (100, 3)


def test_disconnect_fault_closes_the_connection_unanswered(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.DISCONNECT)

    with pytest.raises(httpx.RemoteProtocolError):
        graph.get(f"/{business.id}")
    assert graph.get(f"/{business.id}").status_code == 200


def test_latency_applies_to_matching_calls(
    graph: httpx.Client, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.set_latency(250, path_prefix=f"/v26.0/{business.id}")

    started = time.monotonic()
    graph.get(f"/{business.id}")

    assert time.monotonic() - started >= 0.25


def test_concurrent_writes_keep_every_object(
    simulator: SimulatorServer, control: SimulatorControl, business: SeededBusiness
) -> None:
    created: list[str] = []
    failures: list[BaseException] = []

    def create_many() -> None:
        try:
            with httpx.Client(
                base_url=f"{simulator.base_url}/v26.0", headers={"Authorization": f"Bearer {business.token}"}
            ) as client:
                for n in range(20):
                    created.append(str(_create_account(client, business, f"Parallel {n}")["id"]))
        except BaseException as error:  # re-raised in the test thread below
            failures.append(error)

    threads = [threading.Thread(target=create_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(set(created)) == 160
    assert control.counters().objects.ad_accounts == 160


# Command line


def test_command_line_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.meta_simulator", "--port", "0", "--businesses", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        business_line = process.stdout.readline().split()
        listening_line = process.stdout.readline()
        base_url = listening_line.rsplit(" ", 1)[-1].strip()
        token = business_line[-1]
        response = httpx.get(f"{base_url}/v26.0/{business_line[1]}", headers={"Authorization": f"Bearer {token}"})
        assert response.json()["name"] == "Business 1"
    finally:
        process.terminate()
        returncode = process.wait(timeout=10)
    assert returncode == 0


def test_client_and_simulator_agree_on_the_graph_api_version(simulator: SimulatorServer) -> None:
    assert GRAPH_API_VERSION in SERVED_VERSIONS
    assert Settings(_env_file=None).meta_graph_api_version == GRAPH_API_VERSION
    retired = httpx.get(f"{simulator.base_url}/v21.0/me")
    assert retired.status_code == 400
    assert retired.json()["error"]["code"] == 2635
