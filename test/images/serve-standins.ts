/**
 * Glue between the stand-ins (test/images/standins.ts) and the loopback file
 * server: which files to serve under which names, and the stand-ins' part of the
 * site manifest (standInOverride) once the server's URLs are known. A real pyxis
 * tarball or real enroot .debs given to the run (real-inputs.ts) take the
 * stand-ins' place, with their own pins.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadManifest } from "../../src/core/manifest.js";
import type { FileServer } from "./harness.js";
import { describeInputs, type RealFile, type RealInputs, realInputsFrom } from "./real-inputs.js";
import { makeStandIns, type StandInFile, standInOverride } from "./standins.js";

export interface ServedStandIns {
  /** URL name -> local path, for serveFiles. */
  files: Record<string, string>;
  /** inputs.* and nvidiaToolkit of the site manifest, pointing at `server`. */
  override: (server: FileServer) => unknown;
  /** Which of pyxis and enroot are real, which STAND-IN. */
  inputs: Record<"pyxis" | "enroot", string>;
}

/**
 * Makes (or reuses) the stand-ins in `dir`, at the versions manifest.json pins
 * (arm64: the .debs for linux/arm64), and puts the run's real inputs in their
 * place (amd64 only: the real ones given are amd64's).
 */
export async function standInSources(dir: string, arch?: "arm64", real: RealInputs = arch ? {} : realInputsFrom(process.env)): Promise<ServedStandIns> {
  const pinned = loadManifest();
  const made = await makeStandIns(dir, {
    pyxisVersion: pinned.inputs.pyxis.version,
    enrootVersion: pinned.inputs.enroot.version,
    kubectlVersion: pinned.inputs.kubectl.version,
    nvidiaToolkitVersion: pinned.nvidiaToolkit.version,
    ...(arch ? { arch } : {}),
  });
  const asStandIn = (item: RealFile, description: string): StandInFile => ({ ...item, description });
  const standIns = {
    ...made,
    ...(real.pyxis ? { pyxis: asStandIn(real.pyxis, `real pyxis source tarball ${real.pyxis.file}, given by SLINKY_PYXIS_TARBALL`) } : {}),
    ...(real.enroot
      ? {
          enroot: asStandIn(real.enroot.enroot, `real enroot .deb ${real.enroot.enroot.file}, given by SLINKY_ENROOT_DEBS`),
          enrootCaps: asStandIn(real.enroot.enrootCaps, `real enroot+caps .deb ${real.enroot.enrootCaps.file}, given by SLINKY_ENROOT_DEBS`),
        }
      : {}),
  };
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
  return { files, override: (server) => standInOverride(standIns, (file) => server.url(`${prefix}${file}`)), inputs: describeInputs(real) };
}
