# Shared by the grant scripts: prints the objects of the input's "applications" list, one per line.
# The bundled applications are flat objects (no nested lists), which is what keeps this sed simple.
applications() {
  tr -d '\n' | sed -n 's/.*"applications": *\[\([^]]*\)\].*/\1/p' | sed 's/} *, *{/}\n{/g' | grep '{'
}
