"""The access policy as a table: who may read, write, manage and give away a project (pure)."""

from __future__ import annotations

import pytest

from hub_ext.experiments.access import (
    NO_GROUPS,
    can_manage_project,
    can_read_project,
    can_register_version,
    can_transfer_project,
    can_write_project,
    can_write_run,
    group_rights,
    qualified_name,
    resolve_project_name,
    split_qualified,
)
from hub_ext.experiments.store.entities import Project, Run, RunStatus, Viewer
from hub_ext.experiments.store.errors import INVALID_PARAMETER_VALUE, TrackingError

GROUP = Project(1, "flows", "ann", "lqcd", "x", shared_with=("nuclear",))
PRIVATE = Project(2, "mine", "ann", None, "x")


def job_token(project_id: int, user: str = "ann") -> Viewer:
    return Viewer(user, run_id="r" * 32, project_id=project_id)


VIEWERS = {
    "member": Viewer("bob", frozenset({"lqcd"})),
    "owner": Viewer("ann", frozenset({"lqcd"})),
    "owner-who-left": Viewer("ann", frozenset()),
    "owner-who-left-to-shared": Viewer("ann", frozenset({"nuclear"})),
    "share-reader": Viewer("eve", frozenset({"nuclear"})),
    "outsider": Viewer("zed", frozenset({"theory"})),
    "admin": Viewer("root", admin=True),
    "manager": Viewer("mia", frozenset()),  # manages lqcd, is not a member
    "job-token": job_token(1),
    "job-token-elsewhere": job_token(5),
}
RIGHTS = {"manager": group_rights({"name": "mia", "scopes": ["groups!group=lqcd"]})}

# who: (read, write, manage, transfer) of GROUP
GROUP_TABLE = {
    "member": (True, True, False, False),
    "owner": (True, True, True, False),
    "owner-who-left": (False, False, False, False),
    "owner-who-left-to-shared": (True, False, False, False),
    "share-reader": (True, False, False, False),
    "outsider": (False, False, False, False),
    "admin": (True, True, True, True),
    "manager": (False, False, True, True),
    "job-token": (True, False, False, False),
    "job-token-elsewhere": (False, False, False, False),
}
# who: (read, write, manage, transfer) of PRIVATE (ann's)
PRIVATE_TABLE = {
    "owner": (True, True, True, False),
    "owner-who-left": (True, True, True, False),  # no group to leave
    "member": (False, False, False, False),
    "share-reader": (False, False, False, False),
    "admin": (True, True, True, True),
    "manager": (False, False, False, False),  # a private project has no group to manage
    "job-token": (False, False, False, False),
}


def _rights(who: str):
    return RIGHTS.get(who, NO_GROUPS)


@pytest.mark.parametrize(
    ("project", "who", "expected"),
    [pytest.param(GROUP, who, row, id=f"group-{who}") for who, row in GROUP_TABLE.items()]
    + [pytest.param(PRIVATE, who, row, id=f"private-{who}") for who, row in PRIVATE_TABLE.items()],
)
def test_policy_table(project, who, expected):
    viewer, rights = VIEWERS[who], _rights(who)
    got = (
        can_read_project(viewer, project),
        can_write_project(viewer, project),
        can_manage_project(viewer, project, rights),
        can_transfer_project(viewer, project, rights),
    )
    assert got == expected


@pytest.mark.parametrize(
    ("who", "run_user", "expected"),
    [
        ("member", "bob", True),  # a member registers from a run of their own
        ("member", "ann", False),  # not from another member's run
        ("share-reader", "eve", False),  # a share never writes, not even from one's own run
        ("admin", "ann", True),
        ("job-token", "ann", True),  # the run's own token (the run below is the token's)
    ],
)
def test_registering_a_version(who, run_user, expected):
    run = Run("r" * 32, GROUP.id, "r", run_user, RunStatus.RUNNING, 0)
    assert can_register_version(VIEWERS[who], GROUP, run) is expected


def test_runs_are_written_by_their_owner_admins_and_their_job_token():
    run = Run("r" * 32, 1, "r", "ann", RunStatus.RUNNING, 0)
    assert can_write_run(Viewer("ann"), run)
    assert can_write_run(Viewer("root", admin=True), run)
    assert not can_write_run(Viewer("bob", frozenset({"lqcd"})), run)
    assert can_write_run(job_token(1), run)
    assert not can_write_run(Viewer("ann", run_id="s" * 32, project_id=1), run)


@pytest.mark.parametrize(
    ("scopes", "manages"),
    [
        ([], set()),
        (["groups!group=lqcd", "read:groups!group=lqcd"], {"lqcd"}),
        (["admin:groups!group=nuclear"], {"nuclear"}),
        (["read:groups!group=lqcd", "access:services"], set()),  # reading is not managing
        (["groups"], "all"),
        (["admin:groups"], "all"),
    ],
)
def test_group_managers_come_from_the_callers_scopes(scopes, manages):
    rights = group_rights({"name": "mia", "scopes": scopes})
    if manages == "all":
        assert rights.can_manage("lqcd") and rights.can_manage("anything")
    else:
        assert {g for g in ("lqcd", "nuclear", "theory") if rights.can_manage(g)} == manages
    assert group_rights(None) is NO_GROUPS  # a job token (no Hub model) manages nothing


# -- names ------------------------------------------------------------------------------
LQCD = Project(10, "flows", "ann", "lqcd", "x", shared_with=("nuclear",))
NUCLEAR = Project(11, "flows", "eve", "nuclear", "x")
THEORY = Project(12, "flows", "tom", "theory", "x", shared_with=("nuclear",))
EVE_PRIVATE = Project(13, "flows", "eve", None, "x")
ANN_PRIVATE = Project(14, "flows", "ann", None, "x")
SLASHED = Project(15, "lqcd/flows", "eve", None, "x")
EVE = Viewer("eve", frozenset({"nuclear"}))
ANN = Viewer("ann", frozenset({"lqcd", "nuclear"}))


@pytest.mark.parametrize(
    ("viewer", "ref", "candidates", "expected"),
    [
        # another group's unshared project resolves exactly as an unused name
        (EVE, "flows", [Project(20, "flows", "tom", "theory", "x")], None),
        (EVE, "flows", [], None),
        # readable only through a share: found (read access)
        (EVE, "flows", [LQCD], LQCD),
        # her own group's project wins over one only shared with her
        (EVE, "flows", [LQCD, NUCLEAR], NUCLEAR),
        (EVE, "flows", [LQCD, EVE_PRIVATE], EVE_PRIVATE),
        # group/name picks a group, ~/name a private project of one's own
        (EVE, "lqcd/flows", [LQCD, NUCLEAR], LQCD),
        (ANN, "lqcd/flows", [LQCD, NUCLEAR, ANN_PRIVATE], LQCD),
        (ANN, "nuclear/flows", [LQCD, NUCLEAR, ANN_PRIVATE], NUCLEAR),
        (ANN, "~/flows", [LQCD, NUCLEAR, ANN_PRIVATE], ANN_PRIVATE),
        (EVE, "~/flows", [ANN_PRIVATE], None),  # someone else's private project
        (EVE, "theory/flows", [THEORY], THEORY),
        (EVE, "theory/flows", [Project(20, "flows", "tom", "theory", "x")], None),
        # a name that contains a slash still resolves when no group/name matches
        (EVE, "lqcd/flows", [SLASHED], SLASHED),
    ],
)
def test_names_resolve_among_what_the_caller_may_read(viewer, ref, candidates, expected):
    assert resolve_project_name(viewer, ref, candidates) == expected


def test_a_name_two_of_the_callers_groups_use_is_ambiguous_and_names_the_fix():
    with pytest.raises(TrackingError) as err:
        resolve_project_name(ANN, "flows", [LQCD, NUCLEAR, ANN_PRIVATE])
    assert err.value.code == INVALID_PARAMETER_VALUE
    for form in ("'lqcd/flows'", "'nuclear/flows'", "'~/flows'"):
        assert form in err.value.message
    # only shared with her, from two groups: ambiguous too, and only readable ones are named
    with pytest.raises(TrackingError) as err:
        resolve_project_name(EVE, "flows", [LQCD, THEORY, Project(21, "flows", "x", "hidden", "")])
    assert "hidden" not in err.value.message


def test_qualified_names():
    assert split_qualified("lqcd/phi4") == ("lqcd", "phi4")
    assert split_qualified("a/b/c") == ("a", "b/c")
    assert split_qualified("phi4") is None and split_qualified("/x") is None
    assert qualified_name(LQCD) == "lqcd/flows" and qualified_name(ANN_PRIVATE) == "~/flows"
