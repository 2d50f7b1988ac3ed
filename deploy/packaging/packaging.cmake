# The Debian package: `cpack -G DEB` in a build directory writes ingestd_<version>_<arch>.deb.
# Included from the root CMakeLists.txt after the ingestd target exists. What goes where:
#   /usr/bin/ingestd                     the one binary (install rule in the root CMakeLists)
#   /lib/systemd/system/                 deploy/systemd/*.service *.target *.timer
#   /etc/ingestd/ingestd.yaml            deploy/ingestd.example.yaml  (conffile)
#   /etc/ingestd/ingestd.env             deploy/ingestd.env.example   (conffile, 0640 root:ingestd)
#   /usr/share/ingestd/sql/              the migrations, for reading (the binary embeds them)
#   /usr/share/ingestd/{grafana,prometheus}/  dashboard and alert rules
#   /usr/share/doc/ingestd/              README.md, docs/, deploy/README.md as DEPLOY.md,
#                                        deploy/systemd/README.md as SYSTEMD.md
# Maintainer scripts (postinst, prerm, postrm) create the ingestd user and /var/lib/ingestd,
# never start a service, and clean up on purge. tests/deploy/package_test.sh checks all of it.

set(ingestd_deploy "${PROJECT_SOURCE_DIR}/deploy")
set(ingestd_pkg "${CMAKE_CURRENT_LIST_DIR}")

# Units: whatever deploy/systemd holds at configure time. CONFIGURE_DEPENDS makes the build
# (which cpack runs first) reconfigure when one is added or removed.
file(GLOB ingestd_units CONFIGURE_DEPENDS "${ingestd_deploy}/systemd/*.service"
     "${ingestd_deploy}/systemd/*.target" "${ingestd_deploy}/systemd/*.timer")
list(SORT ingestd_units)
install(FILES ${ingestd_units} DESTINATION /lib/systemd/system)

install(FILES "${ingestd_deploy}/ingestd.example.yaml" DESTINATION /etc/ingestd
        RENAME ingestd.yaml)
# It holds secrets: not world-readable; postinst gives it to the ingestd group.
install(FILES "${ingestd_deploy}/ingestd.env.example" DESTINATION /etc/ingestd
        RENAME ingestd.env PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)

file(GLOB ingestd_sql CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/sql/[0-9][0-9][0-9]_*.sql")
install(FILES ${ingestd_sql} "${PROJECT_SOURCE_DIR}/sql/README.md" DESTINATION share/ingestd/sql)

foreach(dir grafana prometheus)
  file(GLOB_RECURSE files CONFIGURE_DEPENDS "${ingestd_deploy}/${dir}/*")
  foreach(f IN LISTS files)
    file(RELATIVE_PATH rel "${ingestd_deploy}" "${f}")
    get_filename_component(sub "${rel}" DIRECTORY)
    install(FILES "${f}" DESTINATION "share/ingestd/${sub}")
  endforeach()
endforeach()

file(GLOB ingestd_docs CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/docs/*.md")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" ${ingestd_docs} DESTINATION share/doc/ingestd)
install(FILES "${ingestd_deploy}/README.md" DESTINATION share/doc/ingestd RENAME DEPLOY.md)
file(GLOB ingestd_units_readme CONFIGURE_DEPENDS "${ingestd_deploy}/systemd/README.md")
if(ingestd_units_readme)
  install(FILES ${ingestd_units_readme} DESTINATION share/doc/ingestd RENAME SYSTEMD.md)
endif()

# prerm stops exactly the units this package ships (when systemd runs).
set(INGESTD_UNIT_NAMES "")
foreach(u IN LISTS ingestd_units)
  get_filename_component(name "${u}" NAME)
  string(APPEND INGESTD_UNIT_NAMES " ${name}")
endforeach()
string(STRIP "${INGESTD_UNIT_NAMES}" INGESTD_UNIT_NAMES)
set(ingestd_control "${CMAKE_CURRENT_BINARY_DIR}/debian-control")
foreach(script postinst prerm postrm)
  configure_file("${ingestd_pkg}/${script}" "${ingestd_control}/${script}" @ONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                  WORLD_READ WORLD_EXECUTE)
endforeach()
configure_file("${ingestd_pkg}/conffiles" "${ingestd_control}/conffiles" COPYONLY)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ingestd)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "ingestd maintainers <ingestd@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mirror a SaaS API into PostgreSQL through a staged pipeline")
string(CONCAT CPACK_DEBIAN_PACKAGE_DESCRIPTION
       "ingestd fetches records from an upstream API (GraphQL or REST) into a spool directory,\n"
       "loads each spool file exactly once into staging tables and reconciles them into\n"
       "production tables, with placeholders for references not seen yet. A monitor serves\n"
       "Prometheus metrics and a health endpoint and sends webhook alerts. One binary, one\n"
       "systemd unit per stage. Installing it starts no service.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries come from dpkg-shlibdeps (package dpkg-dev); these are appended to them.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "postgresql-client")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, prometheus, grafana")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${ingestd_control}/postinst" "${ingestd_control}/prerm"
                                       "${ingestd_control}/postrm" "${ingestd_control}/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_STRIP_FILES ON)
set(CPACK_PROJECT_CONFIG_FILE "${ingestd_pkg}/cpack_checks.cmake")
include(CPack)
