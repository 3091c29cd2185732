/**
 * The platforms the images are built for. linux/amd64 is the default;
 * linux/arm64 is one switch away (`--platforms linux/amd64,linux/arm64`).
 */

/** Every platform the recipe knows, in the order an index lists them. */
export const PLATFORM_NAMES = ["linux/amd64", "linux/arm64"] as const;
export type PlatformName = (typeof PLATFORM_NAMES)[number];
export type Architecture = "amd64" | "arm64";

/** The platform a run builds when nothing else is asked for. */
export const DEFAULT_PLATFORM: PlatformName = "linux/amd64";

export const isPlatform = (value: unknown): value is PlatformName =>
  typeof value === "string" && (PLATFORM_NAMES as readonly string[]).includes(value);

/** The Debian/OCI architecture of a platform: linux/arm64 -> arm64. */
export function archOf(platform: PlatformName): Architecture {
  return platform.slice("linux/".length) as Architecture;
}

/** A comma-separated list as given on the CLI or in $PLATFORMS, entries trimmed. */
export function splitPlatforms(value: string): string[] {
  return value.split(",").map((entry) => entry.trim());
}

/** Platforms in the recipe's order (amd64 first), each once. */
export function sortPlatforms(platforms: readonly PlatformName[]): PlatformName[] {
  return PLATFORM_NAMES.filter((name) => platforms.includes(name));
}
