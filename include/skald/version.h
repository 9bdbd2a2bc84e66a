/*
 * Skald release and plugin ABI versions.
 *
 * ABI rule: additions to the plugin ABI bump SKALD_ABI_MINOR; removing or
 * changing the meaning or layout of anything bumps SKALD_ABI_MAJOR.
 */
#ifndef SKALD_VERSION_H
#define SKALD_VERSION_H

#define SKALD_VERSION "0.1.0"
#define SKALD_VERSION_MAJOR 0
#define SKALD_VERSION_MINOR 1
#define SKALD_VERSION_PATCH 0

#endif
