# cmake -DIN=index.html -DOUT=dashboard_html.c -P embed.cmake
# Writes IN's bytes as the C array wr_dashboard_html (framework/dashboard.h).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}"
  "/* Generated from framework/dashboard/index.html by embed.cmake. */\n"
  "#include <stddef.h>\n"
  "const char wr_dashboard_html[] = {\n${bytes}\n};\n"
  "const size_t wr_dashboard_html_len = ${len};\n")
