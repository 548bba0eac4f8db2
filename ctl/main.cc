// forge-ctl: the command line is ctl/cli.h; every command is a function in commands.h.
#include <unistd.h>

#include <iostream>

#include "ctl/cli.h"

int main(int argc, char** argv) {
  return forge::ctl::RunCli(argc, argv, std::cout, std::cerr);
}
