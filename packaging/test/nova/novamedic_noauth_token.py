"""Paste filter of novamedic's system tests: keeps the noauth2 token.

nova's noauth2 middleware (nova 26) builds the request context from the
X-Auth-Token header, "USER:PROJECT", but leaves the context's auth_token
empty. nova-api then cannot call Glance, because keystoneauth sends no
request without a token. Placed after noauth2, this filter copies the
header into the context. Glance in the tests checks no token.
"""

import webob.dec


def filter_factory(global_conf, **local_conf):
    def wrap(app):
        @webob.dec.wsgify
        def keep_token(req):
            context = req.environ.get('nova.context')
            if context is not None and not context.auth_token:
                context.auth_token = req.headers.get('X-Auth-Token')
            return req.get_response(app)

        return keep_token

    return wrap
