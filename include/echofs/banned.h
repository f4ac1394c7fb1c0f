/* SPDX-License-Identifier: MIT */
/* banned.h - functions that must not be used in EchoFS code (after git's).
 *
 * Each has a bounded replacement: efs_strlcpy / snprintf / efs_buf for the
 * string builders, strtok_r or a plain loop for strtok, efs_parse_u64 for
 * atoi and friends. Included last by common.h so system headers are
 * unaffected.
 */
#ifndef ECHOFS_BANNED_H
#define ECHOFS_BANNED_H

#define EFS_BANNED(func) sorry_##func##_is_banned_in_echofs

#undef strcpy
#define strcpy(x, y) EFS_BANNED(strcpy)
#undef strcat
#define strcat(x, y) EFS_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) EFS_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) EFS_BANNED(strncat)
#undef sprintf
#define sprintf(...) EFS_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) EFS_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) EFS_BANNED(strtok)
#undef atoi
#define atoi(x) EFS_BANNED(atoi)
#undef atol
#define atol(x) EFS_BANNED(atol)
#undef gets
#define gets(x) EFS_BANNED(gets)

#endif
