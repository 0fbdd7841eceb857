/* Literal socket addresses of stripe servers. A client dials exactly what
 * the config says: no name resolution, so a config never depends on DNS
 * (and never waits for it). The grammar is common.h's
 * socket_address_parse(); this adds the copy of the text kept for
 * messages. */
#include "remote/remote.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int refuse(struct error *err, const char *text, const char *reason)
{
	return error_set(err, -EINVAL, "invalid server address %s: %s", text, reason);
}

int remote_address_parse(const char *text, struct remote_address *out, struct error *err)
{
	memset(out, 0, sizeof(*out));
	if (!text)
		text = "";
	snprintf(out->text, sizeof(out->text), "%s", text);
	/* Every later message quotes out->text: a cut copy would name another
	 * address. */
	if (strlen(text) >= sizeof(out->text))
		return refuse(err, out->text, "too long");
	const char *why;
	/* Port 0 is no server to dial. */
	if (socket_address_parse(text, false, &out->addr, &out->len, &why))
		return refuse(err, text, why);
	return 0;
}
