# embed_rules.cmake - turn the shipped rules file (IN) into a C header
# (OUT) holding it as one string, bounce_builtin_text[]. Run with cmake -P.
# The whole file is one string (not a CMake list), so ';' survives.
file(READ ${IN} text)
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "?" "\\?" text "${text}") # no trigraphs
string(REPLACE "\r" "" text "${text}")
string(REPLACE "\n" "\\n\"\n\t\"" text "${text}")
file(WRITE ${OUT}.tmp
  "/* generated from contrib/bounce-rules.conf - do not edit */\n"
  "static const char bounce_builtin_text[] =\n\t\"${text}\";\n")
file(RENAME ${OUT}.tmp ${OUT})
