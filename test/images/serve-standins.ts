/**
 * Glue between the stand-ins (test/images/standins.ts) and the loopback file
 * server: which files to serve under which names, and the stand-ins' part of the
 * site manifest (standInOverride) once the server's URLs are known.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadManifest } from "../../src/manifest.js";
import type { FileServer } from "./harness.js";
import { makeStandIns, standInOverride } from "./standins.js";

export interface ServedStandIns {
  /** URL name -> local path, for serveFiles. */
  files: Record<string, string>;
  /** inputs.* and nvidiaToolkit of the site manifest, pointing at `server`. */
  override: (server: FileServer) => unknown;
}

/** Makes (or reuses) the stand-ins in `dir`, at the versions manifest.json pins (arm64: the .debs for linux/arm64). */
export async function standInSources(dir: string, arch?: "arm64"): Promise<ServedStandIns> {
  const pinned = loadManifest();
  const standIns = await makeStandIns(dir, {
    pyxisVersion: pinned.inputs.pyxis.version,
    enrootVersion: pinned.inputs.enroot.version,
    kubectlVersion: pinned.inputs.kubectl.version,
    nvidiaToolkitVersion: pinned.nvidiaToolkit.version,
    ...(arch ? { arch } : {}),
  });
  // arm64's are served under arm64/, beside amd64's (the same names otherwise).
  const prefix = arch ? `${arch}/` : "";
  const files: Record<string, string> = {};
  for (const item of [standIns.pyxis, standIns.enroot, standIns.enrootCaps, standIns.kubectl, standIns.nvidiaKey]) {
    files[`${prefix}${item.file}`] = item.path;
  }
  // The flat apt repository: every file in it, under the repository's directory name.
  for (const name of readdirSync(standIns.nvidiaRepo.path)) {
    files[`${prefix}${standIns.nvidiaRepo.dir}/${name}`] = join(standIns.nvidiaRepo.path, name);
  }
  return { files, override: (server) => standInOverride(standIns, (file) => server.url(`${prefix}${file}`)) };
}
