/** Reference, challenge and Retry-After parsing of the registry client. */
import { describe, expect, it } from "vitest";
import { parseChallenge, sameScope } from "../../src/registry/auth.js";
import { digestOf, formatRef, parseRef, repositoryOf, verifyDigest } from "../../src/registry/reference.js";
import { parseRetryAfter } from "../../src/registry/transport.js";

const D = `sha256:${"a".repeat(64)}`;

describe("image references", () => {
  it.each([
    ["ubuntu", { registry: "docker.io", repository: "library/ubuntu" }],
    ["ubuntu:24.04", { registry: "docker.io", repository: "library/ubuntu", tag: "24.04" }],
    ["docker.io/library/debian:trixie", { registry: "docker.io", repository: "library/debian", tag: "trixie" }],
    ["index.docker.io/foo/bar", { registry: "docker.io", repository: "foo/bar" }],
    ["schedmd/slurm:25.11", { registry: "docker.io", repository: "schedmd/slurm", tag: "25.11" }],
    ["localhost/x", { registry: "localhost", repository: "x" }],
    ["127.0.0.1:5000/g/p/slurmd:25.11-ubuntu24.04-main-a1b2c3d4", { registry: "127.0.0.1:5000", repository: "g/p/slurmd", tag: "25.11-ubuntu24.04-main-a1b2c3d4" }],
    [`registry.gitlab.com/g/p/slurmd:t@${D}`, { registry: "registry.gitlab.com", repository: "g/p/slurmd", tag: "t", digest: D }],
    [`registry.gitlab.com/g/p/slurmd@${D}`, { registry: "registry.gitlab.com", repository: "g/p/slurmd", digest: D }],
  ])("%s", (input, expected) => {
    expect(parseRef(input)).toEqual(expected);
  });

  it("round-trips through formatRef", () => {
    const ref = `registry.gitlab.com:5050/g/p/login-pyxis:25.11-debian13-latest@${D}`;
    expect(formatRef(parseRef(ref))).toBe(ref);
  });

  it.each([
    ["", /empty/],
    ["Registry.example.com/UPPER:tag", /bad repository path/],
    ["r.example.com/x:-tag", /bad tag/],
    [`r.example.com/x:${"t".repeat(129)}`, /bad tag/],
    ["r.example.com/x@sha256:abc", /64 lowercase hex/],
  ])("refuses %j", (input, message) => {
    expect(() => parseRef(input)).toThrow(message);
  });
});

describe("a repository under a registry path", () => {
  it("is the registry host and the path plus the name, with or without trailing slashes, never a tag", () => {
    expect(repositoryOf("registry.example.com:5000/group/project", "slurmd")).toEqual({ registry: "registry.example.com:5000", repository: "group/project/slurmd" });
    expect(repositoryOf("registry.example.com/group/project//", "cache/packages")).toEqual({ registry: "registry.example.com", repository: "group/project/cache/packages" });
    expect(repositoryOf("localhost:5000", "slurmctld")).toEqual({ registry: "localhost:5000", repository: "slurmctld" });
  });

  it("refuses what is no repository path", () => {
    expect(() => repositoryOf("registry.example.com/Group", "slurmd")).toThrow(/bad repository path/);
  });
});

describe("digests", () => {
  it("hashes the exact bytes", () => {
    const bytes = Buffer.from('{"schemaVersion":2}');
    expect(digestOf(Buffer.alloc(0))).toBe("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(verifyDigest(bytes, digestOf(bytes))).toBe(true);
    expect(verifyDigest(Buffer.from('{"schemaVersion": 2}'), digestOf(bytes))).toBe(false);
    expect(verifyDigest(bytes, "md5:abc")).toBe(false);
  });
});

describe("WWW-Authenticate challenges", () => {
  it("reads a bearer challenge with a comma inside the scope", () => {
    expect(
      parseChallenge('Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",scope="repository:g/p/slurmd:pull,push"'),
    ).toEqual({
      scheme: "bearer",
      params: { realm: "https://gitlab.example.com/jwt/auth", service: "container_registry", scope: "repository:g/p/slurmd:pull,push" },
    });
  });
  it("reads basic and an insufficient_scope error", () => {
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: "basic", params: { realm: "Registry Realm" } });
    expect(parseChallenge('Bearer realm="r",error="insufficient_scope"')?.params.error).toBe("insufficient_scope");
    expect(parseChallenge(null)).toBeUndefined();
    expect(parseChallenge("Negotiate abc")).toBeUndefined();
  });
});

describe("Retry-After", () => {
  it("takes seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe("token scopes", () => {
  it("are the same whatever order the registry lists the actions in", () => {
    expect(sameScope("repository:a/b:pull,push", "repository:a/b:push,pull")).toBe(true);
    expect(sameScope("repository:a/b:pull repository:c:pull", "repository:c:pull repository:a/b:pull")).toBe(true);
  });
  it("differ in actions or repository", () => {
    expect(sameScope("repository:a/b:pull", "repository:a/b:pull,push")).toBe(false);
    expect(sameScope("repository:a/b:pull", "repository:a/c:pull")).toBe(false);
  });
});
