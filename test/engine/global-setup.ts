/**
 * Before the image and engine test files start (vitest globalSetup, in the main
 * process): where a Dagger engine can run, a CA and a certificate for the engine
 * tests' HTTPS registry (on the veth address), and NODE_EXTRA_CA_CERTS pointing
 * at the CA, which the forked test processes inherit at their start. The module's
 * registry client (run in the test process in client mode) and the engine
 * (engine.json `ca`) trust that CA and no other change of theirs is made.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DAGGER_DIR, engineUnavailable, HOST_ADDR } from "./dagger.js";

export const TLS_DIR = join(DAGGER_DIR, "tls");

export default function setup(): void {
  if (engineUnavailable() !== undefined) return;
  mkdirSync(TLS_DIR, { recursive: true });
  const at = (name: string) => join(TLS_DIR, name);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", at("ca.key"), "-out", at("ca.pem"), "-days", "2", "-subj", "/CN=slinky-test-registry-ca"]);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", at("registry.key"), "-out", at("registry.csr"), "-subj", `/CN=${HOST_ADDR}`]);
  writeFileSync(at("registry.ext"), `subjectAltName=IP:${HOST_ADDR}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  openssl(["x509", "-req", "-in", at("registry.csr"), "-CA", at("ca.pem"), "-CAkey", at("ca.key"), "-CAcreateserial", "-out", at("registry.pem"), "-days", "2", "-extfile", at("registry.ext")]);
  // skopeo's --cert-dir: the CA alone (a *.key there would be read as a client key).
  mkdirSync(at("skopeo"), { recursive: true });
  copyFileSync(at("ca.pem"), join(TLS_DIR, "skopeo", "ca.crt"));
  process.env.NODE_EXTRA_CA_CERTS = at("ca.pem");
}
