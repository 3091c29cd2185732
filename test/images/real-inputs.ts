/**
 * Real pyxis and enroot for the image harness, when a run is given them (as
 * SLINKY_SLURM_TARBALL gives a real Slurm): the files are taken as they are,
 * their versions and sha256 read from them, and served to the recipe through
 * the site manifest in place of the STAND-INs (serve-standins.ts). Nothing here
 * makes or builds them.
 *
 *   SLINKY_PYXIS_TARBALL  a pyxis source tarball with one top directory pyxis-X.Y.Z/
 *                         (a `git archive --prefix=pyxis-X.Y.Z/` of a tag, or the
 *                         release archive); SLINKY_PYXIS_VERSION may name X.Y.Z, and
 *                         must then agree with the directory
 *   SLINKY_ENROOT_DEBS    a directory holding exactly enroot's two amd64 .debs of one
 *                         version: enroot_<ver>-<rev>_amd64.deb and
 *                         enroot+caps_<ver>-<rev>_amd64.deb
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";

export interface RealFile {
  readonly path: string;
  /** Name it is served under on loopback. */
  readonly file: string;
  readonly version: string;
  readonly sha256: string;
}

export interface RealInputs {
  readonly pyxis?: RealFile;
  readonly enroot?: { readonly enroot: RealFile; readonly enrootCaps: RealFile };
}

const VERSION = /^\d+\.\d+\.\d+$/;

const sha256Of = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

const regularFile = (variable: string, path: string) => {
  if (!existsSync(path) || !statSync(path).isFile()) throw new Error(`${variable}: no such file: ${path}`);
};

/** The pyxis tarball's version, from its one top directory pyxis-X.Y.Z/. */
function pyxisTopVersion(path: string): string {
  let names: string[];
  try {
    names = execFileSync("tar", ["-tf", path], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }).split("\n").filter(Boolean);
  } catch (error) {
    throw new Error(`SLINKY_PYXIS_TARBALL: ${path} is not a readable tar archive (${String((error as Error).message).split("\n")[0]})`);
  }
  const tops = new Set(names.map((name) => name.replace(/^\.\//, "").split("/")[0]));
  const [top] = [...tops];
  const match = tops.size === 1 && top ? /^pyxis-(\d+\.\d+\.\d+)$/.exec(top) : null;
  if (!match) throw new Error(`SLINKY_PYXIS_TARBALL: ${path} must hold one top directory pyxis-X.Y.Z/, not ${[...tops].slice(0, 3).join(", ") || "nothing"}`);
  return match[1]!;
}

/** A .deb's control fields (dpkg-deb -f). */
function debFields(path: string): Record<"Package" | "Version" | "Architecture", string> {
  try {
    const out = execFileSync("dpkg-deb", ["-f", path, "Package", "Version", "Architecture"], { encoding: "utf8" });
    const fields = Object.fromEntries(out.trim().split("\n").map((line) => line.split(/:\s*/, 2) as [string, string]));
    return { Package: fields.Package ?? "", Version: fields.Version ?? "", Architecture: fields.Architecture ?? "" };
  } catch {
    throw new Error(`SLINKY_ENROOT_DEBS: ${path} is not a readable .deb`);
  }
}

function enrootDebs(dir: string): { enroot: RealFile; enrootCaps: RealFile } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`SLINKY_ENROOT_DEBS: no such directory: ${dir}`);
  const debs = readdirSync(dir).filter((name) => name.endsWith(".deb"));
  const found: Record<string, RealFile> = {};
  for (const name of debs) {
    const path = join(dir, name);
    const fields = debFields(path);
    if (fields.Architecture !== "amd64") throw new Error(`SLINKY_ENROOT_DEBS: ${name} is for ${fields.Architecture}, not amd64 (the harness builds linux/amd64)`);
    if (fields.Package !== "enroot" && fields.Package !== "enroot+caps") throw new Error(`SLINKY_ENROOT_DEBS: ${name} is package ${fields.Package}, not enroot or enroot+caps`);
    if (found[fields.Package]) throw new Error(`SLINKY_ENROOT_DEBS: two .debs of ${fields.Package} in ${dir}`);
    const version = fields.Version.replace(/-[^-]+$/, "");
    if (!VERSION.test(version)) throw new Error(`SLINKY_ENROOT_DEBS: ${name} has version ${fields.Version}, not X.Y.Z-REV`);
    found[fields.Package] = { path, file: basename(path), version, sha256: sha256Of(path) };
  }
  const enroot = found.enroot;
  const enrootCaps = found["enroot+caps"];
  if (!enroot || !enrootCaps) throw new Error(`SLINKY_ENROOT_DEBS: ${dir} must hold enroot's and enroot+caps's amd64 .debs; found ${debs.join(", ") || "no .deb"}`);
  if (enroot.version !== enrootCaps.version) throw new Error(`SLINKY_ENROOT_DEBS: enroot is ${enroot.version} but enroot+caps is ${enrootCaps.version}`);
  return { enroot, enrootCaps };
}

/** The real inputs this run was given (none: every input is a STAND-IN); refuses bad ones by name, before any build. */
export function realInputsFrom(env: NodeJS.ProcessEnv): RealInputs {
  const tarball = env.SLINKY_PYXIS_TARBALL?.trim();
  const version = env.SLINKY_PYXIS_VERSION?.trim();
  const debs = env.SLINKY_ENROOT_DEBS?.trim();
  let pyxis: RealFile | undefined;
  if (tarball) {
    regularFile("SLINKY_PYXIS_TARBALL", tarball);
    const top = pyxisTopVersion(tarball);
    if (version && version !== top) throw new Error(`SLINKY_PYXIS_VERSION is ${version} but ${basename(tarball)} holds pyxis-${top}/`);
    pyxis = { path: tarball, file: basename(tarball), version: top, sha256: sha256Of(tarball) };
  } else if (version) {
    throw new Error("SLINKY_PYXIS_VERSION needs SLINKY_PYXIS_TARBALL: the pyxis source tarball of that version");
  }
  return { ...(pyxis ? { pyxis } : {}), ...(debs ? { enroot: enrootDebs(debs) } : {}) };
}

/** Which inputs are real, for the run's report ("STAND-IN" for the others). */
export function describeInputs(real: RealInputs): Record<"pyxis" | "enroot", string> {
  return {
    pyxis: real.pyxis ? `real ${real.pyxis.version} (${real.pyxis.file}, sha256 ${real.pyxis.sha256})` : "STAND-IN",
    enroot: real.enroot ? `real ${real.enroot.enroot.version} (${real.enroot.enroot.file}, ${real.enroot.enrootCaps.file})` : "STAND-IN",
  };
}
