/**
 * publish of several platforms as one image index: the query Dagger's
 * publish would send, read by standing in for the engine's answer only
 * (STAND-IN: Context.execute returns a digest instead of asking an engine).
 */
import { Context, dag } from "@dagger.io/dagger";
import { afterEach, describe, expect, it, vi } from "vitest";
import { publishIndex } from "../../src/release/pipeline.engine.js";
import type { QueryStep } from "../support/dagger.js";

const REF = "registry.example.com/g/p/slurmd:25.11-ubuntu24.04-main-a1b2c3d4";
const DIGEST = `sha256:${"a".repeat(64)}`;

/** Runs `publish` with the engine's answer stood in for, and returns the query it would send. */
async function publishedQuery(run: () => Promise<string>): Promise<{ result: string; query: QueryStep[] }> {
  let query: QueryStep[] = [];
  vi.spyOn(Context.prototype, "execute").mockImplementation(async function (this: Context) {
    query = (this as unknown as { _queryTree: QueryStep[] })._queryTree;
    return `${REF}@${DIGEST}` as never;
  });
  return { result: await run(), query };
}

describe("publishIndex", () => {
  afterEach(() => vi.restoreAllMocks());
  const password = () => dag.setSecret("registry-password", "not-a-real-password");

  it("pushes one platform's container as it is", async () => {
    const amd64 = dag.container({ platform: "linux/amd64" as never }).withLabel("p", "amd64");
    const { result, query } = await publishedQuery(() => publishIndex([amd64], REF, "registry.example.com/g/p", "u", password()));
    expect(result).toBe(`${REF}@${DIGEST}`);
    const publish = query.at(-1);
    expect(publish?.operation).toBe("publish");
    expect(publish?.args).toMatchObject({ address: REF });
    expect(publish?.args).not.toHaveProperty("platformVariants");
    expect(query.map((s) => s.operation)).toEqual(["container", "withLabel", "withRegistryAuth", "publish"]);
  });

  it("pushes several platforms as one index: an empty container with registry auth, the platforms as variants", async () => {
    const amd64 = dag.container({ platform: "linux/amd64" as never });
    const arm64 = dag.container({ platform: "linux/arm64" as never });
    const { query } = await publishedQuery(() => publishIndex([amd64, arm64], REF, "registry.example.com/g/p", "u", password()));
    expect(query.map((s) => s.operation)).toEqual(["container", "withRegistryAuth", "publish"]);
    expect(query[1]?.args).toMatchObject({ address: "registry.example.com", username: "u" });
    const publish = query.at(-1)?.args as { address: string; platformVariants: unknown[] };
    expect(publish.address).toBe(REF);
    expect(publish.platformVariants).toHaveLength(2);
  });
});
