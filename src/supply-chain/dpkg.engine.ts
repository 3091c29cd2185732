/**
 * The engine side of the SBOM: DPKG_QUERY run in a built container.
 */
import type { Container } from "@dagger.io/dagger";
import { DPKG_QUERY } from "./dpkg.js";

/** A built container with DPKG_QUERY run in it, as root, without its entrypoint (the container itself is unchanged). */
export function dpkgQueryContainer(container: Container): Container {
  return container.withUser("root").withExec(DPKG_QUERY);
}

/** Runs DPKG_QUERY in a built container and returns its stdout, for parseDpkgQuery. */
export function dpkgQuery(container: Container): Promise<string> {
  return dpkgQueryContainer(container).stdout();
}
