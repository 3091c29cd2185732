import { describe, expect, it } from "vitest";
import { branchTags, refSlug, sha8, TAG_PATTERN, TagError } from "../../src/core/tags.js";

const SHA = "A1B2C3D4E5F60718293a4b5c6d7e8f9012345678";
const base = { line: "25.11", flavor: "ubuntu24.04", sha: SHA, defaultBranch: "main" };

describe("refSlug follows GitLab's CI_COMMIT_REF_SLUG", () => {
  it.each([
    // GitLab's own vectors (FACTS.md section 4)
    ["fix/1-foo", "fix-1-foo"],
    ["FOO", "foo"],
    ["test_trailing_", "test-trailing"],
    ["a".repeat(64), "a".repeat(63)],
    // the seed guide's examples
    ["main", "main"],
    ["dev-ci-pipeline", "dev-ci-pipeline"],
    ["feature/xyz", "feature-xyz"],
    // repeats are not collapsed
    ["a//b__c", "a--b--c"],
    // leading and trailing punctuation is stripped, inner kept
    ["--/release/.x.", "release--x"],
    ["_-_a", "a"],
    // unicode: lowercased, then every code point outside a-z0-9 is one "-"
    ["Überfall", "berfall"],
    ["fix/ß-straße", "fix---stra-e"],
    ["emoji-😀-x", "emoji---x"],
    // cut at 63 before stripping: a "-" at position 63 disappears
    [`${"a".repeat(62)}/b`, "a".repeat(62)],
    [`${"a".repeat(63)}/tail`, "a".repeat(63)],
  ])("%j -> %j", (ref, slug) => {
    expect(refSlug(ref)).toBe(slug);
  });

  it("can be empty", () => {
    expect(refSlug("///")).toBe("");
    expect(refSlug("ñ")).toBe("");
  });
});

describe("sha8", () => {
  it("takes the first 8 hex characters, lowercased", () => {
    expect(sha8(SHA)).toBe("a1b2c3d4");
    expect(sha8("0123abcd")).toBe("0123abcd");
  });
  it.each(["", "1234567", "g1b2c3d4e5", "a1b2c3d4-", "a1b2 c3d4", "a".repeat(65)])("refuses %j", (sha) => {
    expect(() => sha8(sha)).toThrow(TagError);
    expect(() => sha8(sha)).toThrow(/8 to 64 hexadecimal/);
  });
});

describe("branchTags", () => {
  it("gives the seed guide's tags on main, with the production tag", () => {
    expect(branchTags({ ...base, branch: "main" })).toEqual({
      commit: "25.11-ubuntu24.04-main-a1b2c3d4",
      branchLatest: "25.11-ubuntu24.04-main-latest",
      production: "25.11-ubuntu24.04-latest",
    });
  });

  it("gives branch tags and no production tag elsewhere", () => {
    expect(branchTags({ ...base, branch: "feature/xyz" })).toEqual({
      commit: "25.11-ubuntu24.04-feature-xyz-a1b2c3d4",
      branchLatest: "25.11-ubuntu24.04-feature-xyz-latest",
      production: null,
    });
  });

  it("promotes whatever the default branch is called", () => {
    expect(branchTags({ ...base, branch: "trunk", defaultBranch: "trunk" }).production).toBe("25.11-ubuntu24.04-latest");
    expect(branchTags({ ...base, branch: "main", defaultBranch: "trunk" }).production).toBeNull();
  });

  it("keeps every tag inside OCI's grammar for the longest slug", () => {
    const tags = branchTags({ ...base, branch: "x".repeat(200) });
    for (const tag of [tags.commit, tags.branchLatest]) expect(tag).toMatch(TAG_PATTERN);
    expect(tags.commit).toHaveLength(5 + 1 + 11 + 1 + 63 + 1 + 8);
  });

  it("refuses a branch with an empty slug, naming it", () => {
    expect(() => branchTags({ ...base, branch: "__" })).toThrow(/branch "__" has an empty slug/);
  });

  it("refuses a tag outside OCI's grammar", () => {
    expect(() => branchTags({ ...base, flavor: "ubuntu 24.04", branch: "main" })).toThrow(/outside OCI's tag grammar/);
    expect(() => branchTags({ ...base, line: "x".repeat(120), branch: "main" })).toThrow(TagError);
  });
});
