/*
 * sitekey.h - site keys and the provider table. Module-internal header of
 * src/mxsched.
 *
 * Site key format (the key itself, not a hash): the exchanger host names,
 * lowercased, sorted within each preference, preference groups in
 * ascending order, as "PREF:host,host;PREF:host", e.g.
 *     "10:a.mx.test,b.mx.test;20:c.mx.test"
 * A host listed at several preferences counts once, at its lowest one.
 * The implicit MX is "0:<domain>"; an address literal "0:[192.0.2.1]".
 * sitekey_hash() gives a 64-bit FNV-1a of the key for compact ids.
 *
 * Provider table: see contrib/providers.conf for the file format. A site
 * belongs to a provider when every exchanger of its most preferred group
 * matches that provider's suffixes (longest suffix wins per host); when
 * they disagree, the site has no provider.
 */
#ifndef MXB_MXSCHED_SITEKEY_H
#define MXB_MXSCHED_SITEKEY_H

#include <stddef.h>
#include <stdint.h>

struct resolve_mx;
struct provider;
struct provider_table;

/* Site key of exchangers (any order), malloc'd (free()). */
char *sitekey_from_mx(const struct resolve_mx *mx, size_t n);
/* Same from parallel arrays of names and preferences. */
char *sitekey_make(const char *const *names, const unsigned *prefs, size_t n);
uint64_t sitekey_hash(const char *key);

struct provider_table *provider_table_new(void);
/* Load a providers.conf file into a new table; NULL with "FILE:LINE: ..."
 * in err on error. */
struct provider_table *provider_table_load(const char *path, char *err,
                                           size_t errlen);
/* Add one line of that format (also used for config extensions); a later
 * line for an existing provider adds suffixes and options to it. 0 ok,
 * -1 with the reason in err. Blank and '#' lines are accepted. */
int provider_table_add_line(struct provider_table *t, const char *line,
                            char *err, size_t errlen);
void provider_table_free(struct provider_table *t);
size_t provider_table_count(const struct provider_table *t);

/* Provider of one host name, or NULL. */
const struct provider *provider_for_host(const struct provider_table *t,
                                         const char *host);
/* Provider of a site (rule above), or NULL. */
const struct provider *provider_for_mx(const struct provider_table *t,
                                       const struct resolve_mx *mx, size_t n);
const char *provider_name(const struct provider *p);
/* Shape override value of key ("multi_domain", ...), or NULL. */
const char *provider_option(const struct provider *p, const char *key);
/* Iterate the overrides: 0 and key/value for i < count, -1 past the end. */
int provider_option_at(const struct provider *p, size_t i, const char **key,
                       const char **value);

#endif
