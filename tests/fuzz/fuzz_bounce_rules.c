/*
 * fuzz_bounce_rules - the bounce rules parser and the classifier
 * (src/bounce/bounce_rules.c, bounce_classify.c). Input: rule lines, a
 * NUL byte, then a remote reply "code text" that is classified with the
 * fuzzed rules and with the shipped ones. Properties: a refused rule line
 * gives an error text and adds nothing; the class is in range; 5xx is
 * permanent and 4xx is not; the rule index names an existing rule.
 */
#include "bounce/bounce.h"
#include "fuzz_util.h"

static struct bounce_rules *builtin;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	builtin = bounce_rules_builtin();
	return 0;
}

static void
check_class(const struct bounce_rules *r, const struct bounce_reply *rep)
{
	struct bounce_class c = bounce_classify(r, rep);

	FZ_CHECK(c.cat >= 0 && c.cat < BOUNCE_CAT_COUNT);
	FZ_CHECK(c.sig >= 0 && c.sig < BOUNCE_SIG_COUNT);
	FZ_CHECK(c.rule >= -1 && c.rule < (int)bounce_rules_count(r));
	if (rep->code >= 500 && rep->code < 600)
		FZ_CHECK(c.permanent == 1);
	if (rep->code >= 400 && rep->code < 500)
		FZ_CHECK(c.permanent == 0);
	FZ_CHECK(bounce_category_name(c.cat) != NULL);
}

static void
add_rules(struct bounce_rules *r, char *text)
{
	char err[512];
	unsigned lineno = 0;

	for (char *line = text, *nl; line != NULL; line = nl) {
		size_t before = bounce_rules_count(r);
		if ((nl = strchr(line, '\n')) != NULL)
			*nl++ = '\0';
		if (strlen(line) > 300)
			continue; /* keep POSIX regcomp time bounded */
		err[0] = '\0';
		if (bounce_rules_add_line(r, line, "fuzz", ++lineno, err,
		                          sizeof(err)) != 0) {
			FZ_CHECK(err[0] != '\0');
			FZ_CHECK(bounce_rules_count(r) == before);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *z = memchr(data, '\0', size);
	char *rules, *reply, *sp;
	struct bounce_rules *r;
	struct bounce_reply rep = { 0 };

	if (size > 4096)
		return 0;
	rules = fz_strndup(data, z ? (size_t)(z - data) : size);
	reply = z ? fz_strndup(z + 1, size - (size_t)(z - data) - 1)
	          : fz_strndup((const uint8_t *)"", 0);
	r = bounce_rules_new();
	add_rules(r, rules);
	rep.code = (int)strtol(reply, &sp, 10);
	if (rep.code < 0 || rep.code > 999)
		rep.code = 0;
	rep.text = *sp == ' ' ? sp + 1 : sp;
	for (int ph = 0; ph < BOUNCE_PHASE_COUNT; ph++) {
		rep.phase = (enum bounce_phase)ph;
		check_class(r, &rep);
		check_class(builtin, &rep);
	}
	rep.enhanced = rep.text;
	check_class(builtin, &rep);
	bounce_rules_free(r);
	free(rules);
	free(reply);
	return 0;
}
