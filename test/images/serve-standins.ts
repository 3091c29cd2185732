/**
 * Glue between the stand-ins (test/images/standins.ts) and the loopback file
 * server: which files to serve under which names, and the pinned downloads
 * (URL, sha256, version) the harness's site manifest points the recipe at.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { InputName } from "../../src/catalog.js";
import { loadManifest } from "../../src/manifest.js";
import type { FileServer } from "./harness.js";
import type { HarnessSources, ServedDownload } from "./runner.js";
import { makeStandIns, type StandInFile } from "./standins.js";

export interface ServedStandIns {
  /** URL name -> local path, for serveFiles. */
  files: Record<string, string>;
  /** The downloads, once the server's origin is known. */
  sources: (server: FileServer) => Pick<HarnessSources, "inputs" | "nvidiaRepository">;
}

/** Makes (or reuses) the stand-ins in `dir`, at the versions manifest.json pins. */
export async function standInSources(dir: string): Promise<ServedStandIns> {
  const pinned = loadManifest();
  const standIns = await makeStandIns(dir, {
    pyxisVersion: pinned.inputs.pyxis.version,
    enrootVersion: pinned.inputs.enroot.version,
    kubectlVersion: pinned.inputs.kubectl.version,
    nvidiaToolkitVersion: pinned.nvidiaToolkit.version,
  });
  const items: Record<InputName, StandInFile> = {
    pyxis: standIns.pyxis,
    enroot: standIns.enroot,
    enrootCaps: standIns.enrootCaps,
    kubectl: standIns.kubectl,
    nvidiaKey: standIns.nvidiaKey,
  };
  const files: Record<string, string> = {};
  for (const item of Object.values(items)) files[item.file] = item.path;
  // The flat apt repository: every file in it, under the repository's directory name.
  for (const name of readdirSync(standIns.nvidiaRepo.path)) {
    files[`${standIns.nvidiaRepo.dir}/${name}`] = join(standIns.nvidiaRepo.path, name);
  }
  return {
    files,
    sources: (server) => ({
      inputs: Object.fromEntries(
        Object.entries(items).map(([name, item]): [string, ServedDownload] => [
          name,
          { version: item.version, url: server.url(item.file), sha256: item.sha256 },
        ]),
      ) as Record<InputName, ServedDownload>,
      nvidiaRepository: { url: server.url(standIns.nvidiaRepo.dir), version: standIns.nvidiaRepo.version },
    }),
  };
}
