/**
 * Predicates to attest in the signing tests: small but well-formed SPDX 2.3
 * and SLSA v1 documents naming the image. (The module's own documents come
 * from src/sbom.ts and src/provenance.ts; these tests are about signing.)
 */
import type { Predicates } from "../../src/signing.js";

export function standInPredicates(image: string, digest: string): Predicates {
  const spdxjson = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: image,
    documentNamespace: `https://slinky.invalid/spdx/${image}/${digest}`,
    creationInfo: { created: "2026-11-29T00:00:00Z", creators: ["Tool: slinky-containers-test"] },
    packages: [{ SPDXID: "SPDXRef-Package-tini", name: "tini", versionInfo: "0.19.0-1", downloadLocation: "NOASSERTION" }],
  };
  const slsaprovenance1 = {
    buildDefinition: {
      buildType: "https://slinky.invalid/build/v1",
      externalParameters: { image },
      internalParameters: {},
      resolvedDependencies: [{ uri: "https://download.schedmd.com/slurm/slurm-25.11.8.tar.bz2", digest: { sha256: "0".repeat(64) } }],
    },
    runDetails: { builder: { id: "https://slinky.invalid/builder" }, metadata: { invocationId: "test" } },
  };
  return { spdxjson, slsaprovenance1 };
}
