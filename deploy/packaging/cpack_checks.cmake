# Read by cpack when it packages (CPACK_PROJECT_CONFIG_FILE). Without dpkg-shlibdeps, CPack
# would quietly write a .deb whose Depends lacks every shared library; say what to install.
if(CPACK_GENERATOR STREQUAL "DEB")
  find_program(INGESTD_SHLIBDEPS dpkg-shlibdeps)
  find_program(INGESTD_FILE file)
  if(NOT INGESTD_SHLIBDEPS OR NOT INGESTD_FILE)
    message(FATAL_ERROR "ingestd: the .deb's Depends come from dpkg-shlibdeps, which needs "
                        "`file`: apt-get install dpkg-dev file")
  endif()
endif()
