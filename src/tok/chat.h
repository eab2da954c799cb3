/* chat.h - conversation -> prompt text, in the format the model was tuned on.
 * Room: tok. May touch: core. Knows nothing of token ids: the rendered text is
 * tokenized afterwards with special-token parsing on.
 *
 * A GGUF carries its chat template as Jinja source (tokenizer.chat_template).
 * kvlm does not run Jinja: it recognises the template family and renders it in C.
 *   ChatML  (<|im_start|>role\ncontent<|im_end|>\n; SmolLM2, Qwen) - also the
 *           default when the file has no template, as in llama.cpp
 *   Llama 3 (<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>)
 * For ChatML the default system message is taken from the template's literal
 * "<|im_start|>system\n...<|im_end|>" text, and added when the first message is
 * not a system message (SmolLM2's template does exactly that). */
#ifndef KVLM_TOK_CHAT_H
#define KVLM_TOK_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include "kvlm.h"

/* KVLM_ERR_INVALID for a NULL role/content or a role other than system, user,
 * assistant, tool; KVLM_ERR_UNSUPPORTED for a template of another family;
 * KVLM_ERR_NOMEM. *out is malloc'd, NUL-terminated. tmpl may be NULL. */
kvlm_err chat_render(const char *tmpl, const kvlm_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                     char **out, char *err, size_t errlen);

#endif
