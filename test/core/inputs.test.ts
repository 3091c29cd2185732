/**
 * One validation for every entry point: each bad input of the table is
 * refused, with the same message, by every Dagger function that takes it,
 * before the function builds or sends any engine query (no engine exists
 * here: any query the SDK would build goes through Context.select, which is
 * watched).
 */
import { Context, dag, type Secret } from "@dagger.io/dagger";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { SlinkyContainers } from "../../src/index.js";
import { checkInputs, InvalidInputError, redactCredentials, referenceProblem, shown } from "../../src/core/inputs.js";
import { loadManifest } from "../../src/core/manifest.js";
import { resolve } from "../../src/build/plan.js";

const SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const CREDENTIAL = "hunter2-Secr3t";

type Field =
  | "registry"
  | "branch"
  | "defaultBranch"
  | "commitSha"
  | "commitTimestamp"
  | "pipelineSource"
  | "username"
  | "slurmVersion"
  | "flavor"
  | "group"
  | "image"
  | "platform"
  | "platforms";

const LABEL: Record<Field, string> = {
  registry: "registry",
  branch: "branch",
  defaultBranch: "default branch",
  commitSha: "commit sha",
  commitTimestamp: "commit timestamp",
  pipelineSource: "pipeline source",
  username: "username",
  slurmVersion: "Slurm version",
  flavor: "flavor",
  group: "group",
  image: "image",
  platform: "platform",
  platforms: "platforms",
};

type Args = Record<Field, string>;
const VALID: Args = {
  registry: "registry.example.com:5050/group/project",
  branch: "main",
  defaultBranch: "main",
  commitSha: SHA,
  commitTimestamp: "2026-11-28T00:00:00Z",
  pipelineSource: "push",
  username: "gitlab-ci-token",
  slurmVersion: "25.11",
  flavor: "ubuntu24.04",
  group: "core",
  image: "slurmd",
  platform: "linux/amd64",
  platforms: "linux/amd64,linux/arm64",
};

let password: Secret;
const module = new SlinkyContainers(dag.directory());

/** Every entry point, called with the arguments it takes (positional, as the class declares them). */
const ENTRY: Record<string, { takes: Field[]; call: (a: Args) => Promise<unknown> }> = {
  build: {
    takes: ["image", "slurmVersion", "flavor", "platform"],
    call: (a) => module.build(a.image, a.slurmVersion, a.flavor, undefined, undefined, undefined, 7, a.platform),
  },
  "build-all": {
    takes: ["group", "slurmVersion", "flavor", "platforms"],
    call: (a) => module.buildAll(a.group, a.slurmVersion, a.flavor, undefined, undefined, undefined, 7, a.platforms),
  },
  test: {
    takes: ["group", "slurmVersion", "flavor", "platforms"],
    call: (a) => module.test(a.group, a.slurmVersion, a.flavor, undefined, undefined, undefined, 7, a.platforms),
  },
  plan: {
    takes: ["slurmVersion", "flavor", "group", "branch", "commitSha", "registry", "defaultBranch", "platforms"],
    call: (a) => module.plan(a.slurmVersion, a.flavor, a.group, a.branch, a.commitSha, a.registry, a.defaultBranch, undefined, undefined, undefined, 7, a.platforms),
  },
  publish: {
    takes: ["registry", "branch", "commitSha", "username", "slurmVersion", "flavor", "group", "commitTimestamp", "platforms"],
    call: (a) => module.publish(a.registry, a.branch, a.commitSha, a.username, password, a.slurmVersion, a.flavor, a.group, a.commitTimestamp, a.platforms),
  },
  promote: {
    takes: ["registry", "commitSha", "username", "branch", "slurmVersion", "flavor", "group", "defaultBranch"],
    call: (a) => module.promote(a.registry, a.commitSha, a.username, password, a.branch, a.slurmVersion, a.flavor, a.group, a.defaultBranch),
  },
  ci: {
    takes: ["branch", "commitSha", "defaultBranch", "pipelineSource", "registry", "username", "slurmVersion", "flavor", "group", "commitTimestamp", "platforms"],
    call: (a) =>
      module.ci(a.branch, a.commitSha, a.defaultBranch, a.pipelineSource, a.registry, a.username, password, a.slurmVersion, a.flavor, a.group, a.commitTimestamp, "on", undefined, 7, a.platforms),
  },
};

const long = (n: number) => "a".repeat(n);

/** [field, bad value, what the error says, entry points where this value is valid (an empty branch: no branch)]. */
const BAD: [Field, string, RegExp, string[]?][] = [
  // platforms
  ["platform", "linux/arm", /^unknown platform "linux\/arm": valid values are linux\/amd64, linux\/arm64$/],
  ["platform", "linux/amd64,linux/arm64", /^unknown platform "linux\/amd64,linux\/arm64": valid values are linux\/amd64, linux\/arm64$/],
  ["platform", "", /^unknown platform "": valid values/],
  ["platforms", "linux/amd64,linux/amd64", /invalid platforms "linux\/amd64,linux\/amd64": linux\/amd64 is given twice: valid values are linux\/amd64, linux\/arm64, a comma-separated list/],
  ["platforms", "windows/amd64", /"windows\/amd64" is not a platform/],
  ["platforms", "linux/amd64;linux/arm64", /"linux\/amd64;linux\/arm64" is not a platform/],
  ["platforms", "", /invalid platforms "": it is empty/],
  ["platforms", "linux/amd64,,linux/arm64", /it has an empty entry/],
  // registry path
  ["registry", "Registry.Example.com/group", /not a lowercase host name/],
  ["registry", "registry.example.com/Group/Project", /path must be lowercase/],
  ["registry", "https://registry.example.com/group", /leave out the scheme/],
  ["registry", `user:${CREDENTIAL}@registry.example.com/group`, /holds credentials/],
  ["registry", `https://user:${CREDENTIAL}@registry.example.com/group`, /leave out the scheme/],
  ["registry", `${CREDENTIAL}@registry.example.com/group`, /holds credentials/],
  ["registry", "registry.example.com:0/group", /port "0" is not 1 to 65535/],
  ["registry", "registry.example.com:65536/group", /port "65536" is not 1 to 65535/],
  ["registry", "registry.example.com:99999999999/group", /is not 1 to 65535/],
  ["registry", "registry.example.com:http/group", /is not 1 to 65535/],
  ["registry", "registry.example.com/group:v1", /holds a tag/],
  ["registry", `registry.example.com/group@sha256:${"a".repeat(64)}`, /holds a digest/],
  ["registry", "group/project", /not a registry host/],
  ["registry", "", /it is empty/],
  ["registry", " registry.example.com/group", /whitespace/],
  ["registry", "registry.example.com/group project", /whitespace/],
  ["registry", "registry.example.com/group\n", /control or invisible|whitespace/],
  ["registry", "régistry.example.com/group", /not a lowercase host name/],
  ["registry", "registry.example.com/gr\u200boup", /control or invisible/],
  ["registry", `registry.example.com/${long(300)}`, /longer than 255/],
  ["registry", "registry.example.com//group", /path must be lowercase/],
  ["registry", "registry.example.com/-group", /path must be lowercase/],
  ["registry", "-registry.example.com/group", /not a lowercase host name/],
  ["registry", "__proto__", /not a lowercase host name/],
  // branch
  ["branch", "", /it is empty/, ["plan", "ci"]],
  ["branch", " main", /whitespace/],
  ["branch", "feat ure", /whitespace/],
  ["branch", "main\t", /control or invisible|whitespace/],
  ["branch", "feature..x", /git refuses '\.\.'/],
  ["branch", "feature//x", /git refuses/],
  ["branch", "-main", /git refuses this branch name/],
  ["branch", "main/", /git refuses this branch name/],
  ["branch", "main.lock", /git refuses this branch name/],
  ["branch", "a~b", /git refuses the characters/],
  ["branch", "a:b", /git refuses the characters/],
  ["branch", "a*b", /git refuses the characters/],
  ["branch", "a[b", /git refuses the characters/],
  ["branch", "a\\b", /git refuses the characters/],
  ["branch", "x@{y", /git refuses '\.\.', '@\{'/],
  ["branch", "main\u202eniam", /control or invisible/],
  ["branch", "main\u0000", /control or invisible/],
  ["branch", "_/_", /slug would be empty/],
  ["branch", "🙂", /slug would be empty/],
  ["branch", long(300), /longer than 255/],
  // default branch
  ["defaultBranch", "", /it is empty/],
  ["defaultBranch", "ma in", /whitespace/],
  ["defaultBranch", "main..x", /git refuses/],
  // commit sha
  ["commitSha", "", /expected 8 to 64 hexadecimal/],
  ["commitSha", "not-a-sha", /expected 8 to 64 hexadecimal/],
  ["commitSha", "1234567", /expected 8 to 64 hexadecimal/],
  ["commitSha", "g".repeat(40), /expected 8 to 64 hexadecimal/],
  ["commitSha", "a".repeat(65), /expected 8 to 64 hexadecimal/],
  ["commitSha", ` ${SHA}`, /expected 8 to 64 hexadecimal/],
  ["commitSha", `${SHA}\n`, /expected 8 to 64 hexadecimal/],
  ["commitSha", "０１２３４５６７８９", /expected 8 to 64 hexadecimal/],
  ["commitSha", "__proto__", /expected 8 to 64 hexadecimal/],
  // commit timestamp (RFC 3339 only)
  ["commitTimestamp", "yesterday", /not an RFC 3339 date-time/],
  ["commitTimestamp", "2026-11-28", /not an RFC 3339 date-time/],
  ["commitTimestamp", "2026-11-28 00:00:00Z", /not an RFC 3339 date-time/],
  ["commitTimestamp", "2026-11-28T00:00:00", /not an RFC 3339 date-time/],
  ["commitTimestamp", "2026-11-28T00:00:00+1:00", /not an RFC 3339 date-time/],
  ["commitTimestamp", "1764288000", /not an RFC 3339 date-time/],
  ["commitTimestamp", "Sat, 28 Nov 2026 00:00:00 GMT", /not an RFC 3339 date-time/],
  ["commitTimestamp", "2026-13-01T00:00:00Z", /not a real date and time/],
  ["commitTimestamp", "2026-02-30T00:00:00Z", /not a real date and time/],
  ["commitTimestamp", "2026-11-28T25:00:00Z", /not a real date and time/],
  // pipeline source
  ["pipelineSource", "Push", /lowercase word/],
  ["pipelineSource", "push event", /lowercase word/],
  ["pipelineSource", "", /lowercase word/],
  ["pipelineSource", "merge-request", /lowercase word/],
  // username
  ["username", "user name", /whitespace/],
  ["username", "user\n", /control or invisible|whitespace/],
  ["username", long(300), /longer than 255/],
  // names looked up as own keys only
  ["slurmVersion", "24.05", /^unknown Slurm version "24\.05": valid values are 25\.11, /],
  ["slurmVersion", "__proto__", /^unknown Slurm version "__proto__"/],
  ["slurmVersion", "constructor", /^unknown Slurm version "constructor"/],
  ["slurmVersion", "toString", /^unknown Slurm version "toString"/],
  ["slurmVersion", "25.11 ", /whitespace/],
  ["slurmVersion", "", /it is empty/],
  ["slurmVersion", long(300), /longer than 128/],
  ["flavor", "rocky9", /^unknown flavor "rocky9": valid values are ubuntu24\.04, ubuntu26\.04, debian13$/],
  ["flavor", "__proto__", /^unknown flavor "__proto__": valid values are ubuntu24\.04, ubuntu26\.04, debian13$/],
  ["flavor", "constructor", /^unknown flavor "constructor"/],
  ["flavor", "toString", /^unknown flavor "toString"/],
  ["flavor", "hasOwnProperty", /^unknown flavor "hasOwnProperty"/],
  ["flavor", "Ubuntu24.04", /^unknown flavor "Ubuntu24\.04"/],
  ["flavor", "ubuntu24.04\u200b", /control or invisible/],
  ["group", "gpu", /^unknown group "gpu": valid values are core, extras, all$/],
  ["group", "__proto__", /^unknown group "__proto__"/],
  ["group", "constructor", /^unknown group "constructor"/],
  ["group", "toString", /^unknown group "toString"/],
  ["group", "ALL", /^unknown group "ALL"/],
  ["group", "core ", /^unknown group "core "/],
  ["group", "", /^unknown group ""/],
  ["image", "slurmdd", /^unknown image "slurmdd": valid values are slurmctld, slurmd, /],
  ["image", "__proto__", /^unknown image "__proto__"/],
  ["image", "constructor", /^unknown image "constructor"/],
  ["image", "toString", /^unknown image "toString"/],
  ["image", "SLURMD", /^unknown image "SLURMD"/],
];

describe("every bad input is refused by every entry point that takes it, before any engine call", () => {
  const spies: { calls: unknown[][] }[] = [];
  beforeAll(() => {
    password = dag.setSecret("registry-password", CREDENTIAL);
  });
  afterEach(() => vi.restoreAllMocks());

  it("has at least 60 bad inputs, every kind of field among them", () => {
    expect(BAD.length).toBeGreaterThanOrEqual(60);
    expect(new Set(BAD.map(([field]) => field)).size).toBe(Object.keys(LABEL).length);
    expect(spies).toEqual([]);
  });

  const cases = BAD.flatMap(([field, value, why, validIn = []]) =>
    Object.entries(ENTRY)
      .filter(([name, entry]) => entry.takes.includes(field) && !validIn.includes(name))
      .map(([name]) => [name, field, value, why] as const),
  );

  it.each(cases)("%s refuses %s %j", async (name, field, value, why) => {
    const select = vi.spyOn(Context.prototype, "select");
    const selectNode = vi.spyOn(Context.prototype, "selectNode");
    const execute = vi.spyOn(Context.prototype, "execute");
    const entry = ENTRY[name]!;
    const error = await entry.call({ ...VALID, [field]: value }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error, "refused").toBeInstanceOf(Error);
    expect(error?.name).toBe("InvalidInputError");
    const message = error?.message ?? "";
    expect(message).toMatch(why);
    expect(message).toContain(`${LABEL[field]} "`);
    expect(message).toContain("valid values are");
    expect(message).not.toContain(CREDENTIAL);
    expect(message.length).toBeLessThan(900);
    if ([...value].length > 200) expect(message).toMatch(/\(\d+ characters, shortened\)/);
    expect(select).not.toHaveBeenCalled();
    expect(selectNode).not.toHaveBeenCalled();
    expect(execute).not.toHaveBeenCalled();
  });

  it("gives the same message for the same bad input at every entry point", async () => {
    for (const [field, value] of BAD) {
      const messages = new Set<string>();
      for (const [name, entry] of Object.entries(ENTRY)) {
        if (!entry.takes.includes(field) || (value === "" && ["plan", "ci"].includes(name) && field === "branch")) continue;
        messages.add(await entry.call({ ...VALID, [field]: value }).then(() => "accepted", (e: Error) => e.message.split("\n")[0] ?? ""));
      }
      expect([...messages], `${field} ${JSON.stringify(value)}`).toHaveLength(1);
    }
  });

  it("the watch on engine queries sees a valid build's query (control)", async () => {
    const select = vi.spyOn(Context.prototype, "select");
    await module.build(VALID.image, VALID.slurmVersion, VALID.flavor);
    expect(select).toHaveBeenCalled();
    expect(select.mock.calls.map((c) => c[0])).toContain("dockerBuild");
  });

  it("the valid arguments themselves pass validation (the table is not refused for another reason)", async () => {
    expect(() => checkInputs(Object.fromEntries(Object.entries(VALID).filter(([k]) => k !== "slurmVersion" && k !== "flavor")))).not.toThrow();
    expect(resolve(loadManifest(), { slurmVersion: VALID.slurmVersion, flavor: VALID.flavor, group: VALID.group }).images).toHaveLength(6);
    const document = JSON.parse(
      await module.plan(VALID.slurmVersion, VALID.flavor, VALID.group, VALID.branch, VALID.commitSha, VALID.registry, VALID.defaultBranch),
    );
    expect(document.images[0].promotes).toEqual([`${VALID.registry}/slurmctld:25.11-ubuntu24.04-latest`]);
  });

  it("promote refuses a branch other than the default branch before reading anything", async () => {
    const select = vi.spyOn(Context.prototype, "select");
    await expect(
      module.promote(VALID.registry, SHA, "u", password, "feature/x", "25.11", "ubuntu24.04", "core", "main"),
    ).rejects.toThrow(/invalid branch "feature\/x": only the default branch "main" is promoted \(--default-branch\): valid values are main/);
    await expect(
      module.promote(VALID.registry, SHA, "u", password, "main", "25.11", "ubuntu24.04", "core", "trunk"),
    ).rejects.toThrow(/only the default branch "trunk" is promoted/);
    expect(select).not.toHaveBeenCalled();
  });

  it("lists every bad field of one call, one line each", async () => {
    const error = await module
      .publish("Bad/Registry", "a b", "xyz", "u", password, "25.11", "ubuntu24.04", "core", "now")
      .catch((e: Error) => e);
    expect((error as Error).message.split("\n").map((l) => /^invalid [a-z ]+ "[^"]*"/.exec(l)?.[0])).toEqual([
      'invalid registry "Bad/Registry"',
      'invalid branch "a b"',
      'invalid commit sha "xyz"',
      'invalid commit timestamp "now"',
    ]);
  });
});

describe("how a value is shown in an error", () => {
  it("redacts credentials wherever they are in a URL or a registry path", () => {
    expect(redactCredentials(`https://bob:${CREDENTIAL}@mirror.example/x.tar`)).toBe("https://[REDACTED]@mirror.example/x.tar");
    expect(redactCredentials(`see bob:${CREDENTIAL}@registry.example.com/g`)).toBe("see [REDACTED]@registry.example.com/g");
    expect(redactCredentials(`"bob:${CREDENTIAL}@localhost:5000/g"`)).toBe('"[REDACTED]@localhost:5000/g"');
    // An image reference with a tag and a digest is not a credential.
    const ref = `registry.example.com/g/slurmd:25.11-ubuntu24.04-latest@sha256:${"a".repeat(64)}`;
    expect(redactCredentials(ref)).toBe(ref);
    expect(redactCredentials(`pushed slurmd:25.11@sha256:${"b".repeat(64)}`)).toContain("slurmd:25.11@sha256:");
  });

  it("cuts a long value at 200 characters and says how long it was", () => {
    expect(shown(long(1000))).toBe(`"${long(200)}…" (1000 characters, shortened)`);
    expect(shown("🙂".repeat(201))).toBe(`"${"🙂".repeat(200)}…" (201 characters, shortened)`);
    expect(shown("ok")).toBe('"ok"');
    expect(shown(`${CREDENTIAL}@registry.example.com`)).not.toContain(CREDENTIAL);
  });

  it("InvalidInputError keeps the documented shape", () => {
    expect(new InvalidInputError("flavor", "rocky9", ["ubuntu24.04", "debian13"]).message).toBe(
      'unknown flavor "rocky9": valid values are ubuntu24.04, debian13',
    );
  });
});

describe("image references by the OCI grammar", () => {
  it.each([
    ["docker.io/library/ubuntu:24.04", null],
    ["ubuntu", null],
    ["mirror.example:5000/library/debian:trixie", null],
    [`ubuntu:24.04@sha256:${"a".repeat(64)}`, null],
  ])("accepts %s", (ref, problem) => expect(referenceProblem(ref)).toBe(problem));

  it.each([
    ["", /empty/],
    ["Ubuntu:24.04", /not an image reference/],
    ["https://docker.io/library/ubuntu", /scheme/],
    ["ubuntu 24.04", /whitespace/],
    ["ubuntu:-24.04", /not an image reference/],
    [`ubuntu@sha256:${"A".repeat(64)}`, /64 lowercase hex/],
    ["ubuntu:" + "x".repeat(129), /not an image reference/],
    [`${"a".repeat(256)}/ubuntu`, /longer than 255/],
  ])("refuses %j", (ref, why) => expect(referenceProblem(ref)).toMatch(why));

  it("refuses a base image carrying a digest (it belongs in baseDigest)", () => {
    expect(referenceProblem(`ubuntu@sha256:${"a".repeat(64)}`, { digest: false })).toMatch(/baseDigest/);
  });
});
