/**
 * The engine side of signing without an engine: the lazy queries of cosign's
 * container (secrets as withMountedSecret / withSecretVariable, never plain
 * env, args or files), what `dagger call` exposes, and the validation of the
 * signing inputs at every entry point, before anything is built or pushed.
 */
import { dag } from "@dagger.io/dagger";
import { beforeAll, describe, expect, it } from "vitest";
import { cosignCall, cosignContainer, cosignImage, dockerConfigSecret, signerFromArgs } from "../../src/supply-chain/cosign.engine.js";
import { SlinkyContainers } from "../../src/index.js";
import { loadManifest } from "../../src/core/manifest.js";
import { secrets } from "../../src/core/log.js";
import { attestArgs, CONTAINER_DOCKER_CONFIG, CONTAINER_PATHS, signArgs } from "../../src/supply-chain/signing.js";
import { queryOf, type ScannedObject, scanModule } from "../support/dagger.js";

const KEY_CANARY = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----canary-key-9d1";
const PASSWORD_CANARY = "canary-password-71be";
const TOKEN_CANARY = "eyJcanary.token.c0ffee";
const REGISTRY_CANARY = "canary-registry-5a5a";
const D = `sha256:${"cd".repeat(32)}`;
const REF = `registry.example.com/hpc/slinky/slurmd@${D}`;

type Step = { operation: string; args?: Record<string, unknown> };
const ops = (steps: Step[], name: string) => steps.filter((s) => s.operation === name);
/**
 * The container's own steps as text, each argument that is another lazy
 * object (a Secret) shown by reference only: what the engine gets besides
 * the secrets it holds apart.
 */
const ownSteps = (steps: Step[]) =>
  JSON.stringify(steps, (_key, value: unknown) =>
    value && typeof value === "object" && "_ctx" in value ? `<${(value as { _ctx: { _queryTree: Step[] } })._ctx._queryTree[0]?.operation} by reference>` : value,
  );

describe("cosign's container (lazy query)", () => {
  const manifest = loadManifest();
  const key = dag.setSecret("signing-key", KEY_CANARY);
  const password = dag.setSecret("signing-password", PASSWORD_CANARY);
  const token = dag.setSecret("oidc-token", TOKEN_CANARY);

  it("runs cosign's image pinned by digest, and refuses an unpinned one", () => {
    expect(cosignImage(manifest)).toBe(`ghcr.io/sigstore/cosign/cosign:v2.5.0@${manifest.cosign.digest}`);
    const from = ops(queryOf(cosignContainer(manifest, { mode: "off" }, null)), "from");
    expect(from.map((s) => s.args?.address)).toEqual([cosignImage(manifest)]);
    expect(() => cosignImage(loadManifest({ cosign: { digest: null } }))).toThrow(/no digest is pinned for cosign .*refusing to sign/);
  });

  it("key-based: the key is a mounted secret, the password a secret variable, the registry credentials a mounted docker config", () => {
    const auth = dockerConfigSecret("registry.example.com", "gitlab-ci-token", REGISTRY_CANARY);
    const container = cosignContainer(manifest, { mode: "key", signingKey: key, signingPassword: password }, auth);
    const call = cosignCall(container, signArgs(REF, { kind: "key", rekorUrl: null }, CONTAINER_PATHS), {}, "n1");
    const steps = queryOf(call) as Step[];
    const mounted = ops(steps, "withMountedSecret").map((s) => s.args?.path);
    expect(mounted).toEqual([`${CONTAINER_DOCKER_CONFIG}/config.json`, CONTAINER_PATHS.key]);
    expect(ops(steps, "withSecretVariable").map((s) => s.args?.name)).toEqual(["COSIGN_PASSWORD"]);
    for (const s of ops(steps, "withMountedSecret")) expect(typeof s.args?.source).toBe("object");
    for (const s of ops(steps, "withSecretVariable")) expect(typeof s.args?.secret).toBe("object");
    const env = Object.fromEntries(ops(steps, "withEnvVariable").map((s) => [s.args?.name, s.args?.value]));
    expect(env).toMatchObject({ DOCKER_CONFIG: CONTAINER_DOCKER_CONFIG, SLINKY_COSIGN_CALL: "n1" });
    expect(Object.keys(env)).not.toContain("COSIGN_PASSWORD");
    const exec = ops(steps, "withExec")[0];
    expect(exec?.args).toMatchObject({ args: ["sign", "--yes", `--key=${CONTAINER_PATHS.key}`, "--tlog-upload=false", REF], useEntrypoint: true });
    const text = ownSteps(steps);
    expect(text).toContain('"source":"<setSecret by reference>"');
    for (const canary of [KEY_CANARY, PASSWORD_CANARY, REGISTRY_CANARY, Buffer.from(`gitlab-ci-token:${REGISTRY_CANARY}`).toString("base64")]) {
      expect(text).not.toContain(canary);
    }
    // The docker config (it holds the password in base64) is registered with the log scrubber.
    expect(secrets.scrub(`auth ${Buffer.from(`gitlab-ci-token:${REGISTRY_CANARY}`).toString("base64")}`)).toBe("auth [REDACTED]");
  });

  it("keyless: the OIDC token is a mounted secret whose path goes to --identity-token; the URLs given are used", () => {
    const signer = signerFromArgs({ mode: "keyless", oidcToken: token, fulcioUrl: "https://fulcio.site.example", rekorUrl: "https://rekor.site.example" });
    expect(signer).toEqual({ kind: "keyless", fulcioUrl: "https://fulcio.site.example", rekorUrl: "https://rekor.site.example" });
    const container = cosignContainer(manifest, { mode: "keyless", oidcToken: token }, null);
    const steps = queryOf(cosignCall(container, attestArgs(REF, "spdxjson", signer!, CONTAINER_PATHS), { [`${CONTAINER_PATHS.predicates}/${"cd".repeat(32)}.spdxjson.json`]: "{}" }, "n2")) as Step[];
    expect(ops(steps, "withMountedSecret").map((s) => s.args?.path)).toEqual([CONTAINER_PATHS.token]);
    expect(ops(steps, "withSecretVariable")).toEqual([]);
    expect(ops(steps, "withNewFile").map((s) => s.args?.path)).toEqual([`${CONTAINER_PATHS.predicates}/${"cd".repeat(32)}.spdxjson.json`]);
    const argv = ops(steps, "withExec")[0]?.args?.args as string[];
    expect(argv).toContain(`--identity-token=${CONTAINER_PATHS.token}`);
    expect(argv).toContain("--fulcio-url=https://fulcio.site.example");
    expect(ownSteps(steps)).not.toContain(TOKEN_CANARY);
  });

  it("defaults: keyless on the public Fulcio and Rekor; key-based without a transparency log; off signs nothing", () => {
    expect(signerFromArgs({ mode: "keyless" })).toEqual({ kind: "keyless", fulcioUrl: "https://fulcio.sigstore.dev", rekorUrl: "https://rekor.sigstore.dev" });
    expect(signerFromArgs({ mode: "key" })).toEqual({ kind: "key", rekorUrl: null });
    expect(signerFromArgs({ mode: "key", rekorUrl: "https://rekor.site.example" })).toEqual({ kind: "key", rekorUrl: "https://rekor.site.example" });
    expect(signerFromArgs({ mode: "off" })).toBeNull();
  });
});

describe("signing as dagger call sees it", () => {
  let module: ScannedObject;
  beforeAll(async () => {
    module = (await scanModule()).objects.SlinkyContainers!;
  }, 120_000);

  it("takes the key, its password and the OIDC token as Secrets on publish and ci; verify takes the public key as a File", () => {
    for (const fn of ["publish", "ci"]) {
      const a = module.methods[fn]!.arguments;
      for (const name of ["signingKey", "signingPassword", "oidcToken"]) expect(a[name]!.type).toEqual({ kind: "OBJECT_KIND", name: "Secret" });
      expect(a.signing!.defaultValue).toBe("off");
    }
    const v = module.methods.verify!.arguments;
    expect(v.publicKey!.type).toEqual({ kind: "OBJECT_KIND", name: "File" });
    expect(v.password!.type).toEqual({ kind: "OBJECT_KIND", name: "Secret" });
    expect(module.methods.verify!.returnType.kind).toBe("STRING_KIND");
    const p = module.methods.promote!.arguments;
    expect(p.publicKey!.type).toEqual({ kind: "OBJECT_KIND", name: "File" });
    expect([p.publicKey, p.certificateIdentity, p.certificateOidcIssuer, p.rekorUrl].every((a) => a!.isOptional)).toBe(true);
  });
});

describe("signing inputs are refused before anything is built or pushed", () => {
  const module = new SlinkyContainers(dag.directory());
  const pw = dag.setSecret("pw", REGISTRY_CANARY);
  const ci = (signing: string, extra: Partial<Record<string, unknown>> = {}) =>
    module.ci(
      "main",
      "a1b2c3d4e5f6",
      "main",
      "push",
      "registry.example.com/g/p",
      "u",
      pw,
      "25.11",
      "ubuntu24.04",
      "core",
      undefined,
      "off",
      undefined,
      7,
      "linux/amd64",
      signing,
      extra.signingKey as never,
      extra.signingPassword as never,
      extra.oidcToken as never,
      extra.fulcioUrl as string | undefined,
      extra.rekorUrl as string | undefined,
      extra.certificateIdentity as string | undefined,
      extra.certificateOidcIssuer as string | undefined,
    );

  it("an unknown mode, naming the valid ones", async () => {
    await expect(ci("sigstore")).rejects.toThrow('unknown signing "sigstore": valid values are off, key, keyless');
  });

  it("key-based without the key or its password: each missing secret named, no value shown", async () => {
    const error = await ci("key").catch((e: Error) => e);
    expect((error as Error).message).toMatch(/invalid signing key "\(not given\)": key-based signing needs the private key: valid values are a cosign private key as a Secret/);
    expect((error as Error).message).toMatch(/invalid signing password "\(not given\)"/);
  });

  it("keyless without a token, with the log off, a Fulcio URL holding credentials: every problem listed, the credential redacted", async () => {
    const error = (await ci("keyless", { rekorUrl: "off", fulcioUrl: "https://admin:hunter22@fulcio.site.example" }).catch((e: Error) => e)) as Error;
    expect(error.message).toMatch(/invalid Fulcio URL "https:\/\/\[REDACTED\]@fulcio.site.example": it holds credentials/);
    expect(error.message).toMatch(/invalid OIDC token "\(not given\)"/);
    expect(error.message).toMatch(/invalid Rekor URL "off": keyless signing needs a transparency log/);
    expect(error.message).toMatch(/invalid certificate identity "\(not given\)"/);
    expect(error.message).not.toContain("hunter22");
  });

  it("a job URL holding credentials is refused without showing them", async () => {
    const m = new SlinkyContainers(dag.directory());
    const error = (await m
      .ci("main", "a1b2c3d4e5f6", "main", "push", "registry.example.com/g/p", "u", pw, "25.11", "ubuntu24.04", "core", undefined, "off", undefined, 7, "linux/amd64", "off", undefined, undefined, undefined, undefined, undefined, undefined, undefined, "https://gitlab.example.com/p/-/pipelines/1", "https://ci:hunter33@gitlab.example.com/p/-/jobs/2")
      .catch((e: Error) => e)) as Error;
    expect(error.message).toMatch(/invalid job URL "https:\/\/\[REDACTED\]@gitlab.example.com\/p\/-\/jobs\/2": it holds credentials/);
    expect(error.message).not.toContain("hunter33");
  });

  it("promote with a certificate identity but no issuer is refused before any request", async () => {
    await expect(
      module.promote("registry.example.com/g/p", "a1b2c3d4e5f6", "u", pw, "main", "25.11", "ubuntu24.04", "core", "main", undefined, "https://gitlab.com/g/p//.gitlab-ci.yml@refs/heads/main"),
    ).rejects.toThrow(/invalid certificate OIDC issuer "\(not given\)": keyless verification needs the token's issuer/);
  });

  it("publish refuses the same way; verify refuses a reference without a host and keyless without identity", async () => {
    await expect(
      module.publish("registry.example.com/g/p", "main", "a1b2c3d4e5f6", "u", pw, "25.11", "ubuntu24.04", "core", undefined, undefined, "key"),
    ).rejects.toThrow(/invalid signing key "\(not given\)"/);
    await expect(module.verify("slurmd:latest")).rejects.toThrow(/invalid reference "slurmd:latest": name the registry host/);
    await expect(module.verify("registry.example.com/g/p/slurmd:latest")).rejects.toThrow(/invalid certificate identity "\(not given\)"/);
  });
});

describe("the documents attested on each digest (pipeline.documentsOf)", () => {
  it("runs DPKG_QUERY in that platform's container and makes the SPDX SBOM and SLSA provenance of that digest", async () => {
    const { moduleDocuments } = await import("../registry/predicates.js");
    const { DPKG_QUERY } = await import("../../src/supply-chain/dpkg.js");
    const calls: string[][] = [];
    const docs = moduleDocuments("registry.example.com/hpc/slinky", ["linux/amd64", "linux/arm64"], calls);
    const amd = await docs("slurmctld", D, "linux/amd64");
    const arm = await docs("slurmctld", `sha256:${"ef".repeat(32)}`, "linux/arm64");
    expect(calls).toEqual([DPKG_QUERY, DPKG_QUERY]);
    const spdx = amd.spdxjson as { spdxVersion: string; packages: { name: string; externalRefs?: { referenceLocator: string }[] }[] };
    expect(spdx.spdxVersion).toBe("SPDX-2.3");
    expect(spdx.packages.find((p) => p.name === "slurmctld")?.externalRefs?.[0]?.referenceLocator).toContain(`pkg:oci/slurmctld@${D}?arch=amd64&repository_url=registry.example.com%2Fhpc%2Fslinky%2Fslurmctld`);
    expect(spdx.packages.some((p) => p.name === "slurm-smd-slurmctld")).toBe(true);
    expect(JSON.stringify(arm.spdxjson)).toContain("arch=arm64");
    const prov = amd.slsaprovenance1 as { buildDefinition: { externalParameters: Record<string, unknown>; resolvedDependencies: { uri?: string }[] }; runDetails: { builder: { id: string } } };
    expect(prov.buildDefinition.externalParameters).toMatchObject({ image: "slurmctld", platform: "linux/amd64", flavor: "debian13" });
    expect(prov.runDetails.builder.id).toBe(`${loadManifest().project.source}/-/runners`);
    expect((prov.runDetails as { metadata?: { invocationId?: string } }).metadata?.invocationId).toBe("https://gitlab.example.com/hpc/slinky-containers/-/jobs/777");
    expect(prov.buildDefinition.resolvedDependencies.map((d) => d.uri).join(" ")).toContain("slurm-25.11");
  });
  it("records the sha256 of a site manifest (--manifest) in the provenance, and nothing of the kind without one", async () => {
    const { moduleDocuments } = await import("../registry/predicates.js");
    const site = "ab".repeat(32);
    const withSite = await moduleDocuments("registry.example.com/hpc/slinky", ["linux/amd64"], [], { siteManifestSha256: site })("slurmd", D, "linux/amd64");
    const without = await moduleDocuments("registry.example.com/hpc/slinky")("slurmd", D, "linux/amd64");
    expect(JSON.stringify(withSite.slsaprovenance1)).toContain(`"siteManifest":{"sha256":"${site}"}`);
    expect(JSON.stringify(without.slsaprovenance1)).not.toContain("siteManifest");
  });
});

describe("the report directory of a key-signed run", () => {
  it("holds cosign.pub beside the report, for verifiers", async () => {
    const { reportDirectory } = await import("../../src/release/pipeline.engine.js");
    const pub = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n";
    const signing = { mode: "key" as const, fulcioUrl: null, rekorUrl: null, certificateIdentity: null, certificateOidcIssuer: null, publicKey: pub, ok: true, skipped: null, images: [] };
    const context = { branch: "main", commitSha: "a1b2c3d4", defaultBranch: "main", pipelineSource: "push", registry: "r.example.com/g", slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" };
    const report = { schemaVersion: 1 as const, ok: true, mode: "publish" as const, summary: "s", context, tags: null, images: [], promotion: null, signing, errors: [], startedAt: "", finishedAt: "", durationMs: 0 };
    const files = Object.fromEntries((queryOf(reportDirectory(report)) as Step[]).filter((s) => s.operation === "withNewFile").map((s) => [s.args?.path, s.args?.contents]));
    expect(Object.keys(files).sort()).toEqual(["cosign.pub", "report.json", "report.md", "status"]);
    expect(files["cosign.pub"]).toBe(pub);
    expect(files["report.md"]).toContain("## Signing");
  });
});
